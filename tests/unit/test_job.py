"""The main job's progress line: the time left follows the recent pace."""

from __future__ import annotations

import asyncio

import pytest

from marketplace.app.job import Progress, seconds_per_task
from schemas.events import AuctionClosed, BidSubmitted
from tests.samples import every_event


def test_the_pace_is_the_mean_of_the_recent_gaps() -> None:
    assert seconds_per_task([0.0, 10.0, 30.0]) == pytest.approx(15.0)
    assert seconds_per_task([0.0]) == 0.0


def test_a_fast_start_from_cached_work_is_forgotten() -> None:
    cached = [float(i) for i in range(20)]  # twenty tasks, a second each
    slow = [cached[-1] + 300.0 * i for i in range(1, 11)]  # then five minutes each
    assert seconds_per_task(cached + slow, window=10) == pytest.approx(300.0)


def test_the_story_names_bids_by_agent_and_round_and_counts_each_tasks_cost() -> None:
    progress = Progress(["small", "large"], tasks=1)
    lines = [progress.line(event) for event in every_event("he-3")]
    told = "\n".join(line for line in lines if line)
    assert "TaskPosted         he-3: posted: coding task" in told
    assert "TaskChecks" not in told and "JuryCalled" not in told  # not steps of the story
    result = next(line for line in lines if line and line.startswith("TaskResult"))
    assert result.startswith("TaskResult         he-3: small ran small:0 in 1.5s")
    assert progress.cost["he-3"] > 0


def test_the_story_of_a_search_result_has_a_line_per_tool_step() -> None:
    from tests.unit.test_lines import SEARCH_RESULT

    told = Progress(["s"], tasks=1).line(SEARCH_RESULT)
    assert told.splitlines()[0].startswith("TaskResult         dune: s ran")
    assert told.splitlines()[-1].strip() == "answer 'Tacoma'" and len(told.splitlines()) == 7


async def test_a_task_closed_with_no_winner_ends_without_an_outcome() -> None:
    """No bids (or a refusal) means no result and no outcome: the job goes on to the next
    task instead of waiting for an outcome that never comes."""
    progress = Progress(["small"], tasks=2)
    closed = AuctionClosed(producer="auctioneer", task_id="t-1", reason="no_bids", bids=[])
    assert progress.line(closed) is not None  # told like any close
    assert await asyncio.wait_for(progress.ended("t-1"), 1) == "AuctionClosed"
    assert progress.time_left().startswith(" (1/2 done")


def test_a_search_task_s_draft_is_told_as_an_answer_not_against_examples() -> None:
    from tests.unit.test_searching import TASK

    progress = Progress(["s"], tasks=1)
    draft = BidSubmitted(
        producer="s",
        task_id=TASK.task_id,
        agent_id="s",
        model="m",
        plan="Tacoma",
        plan_tokens=3,
        entropy=0.0,
        price=1.0,
        examples_pass=True,
    )
    assert "s draft: passes the visible examples" in progress.line(draft)  # kind not yet known
    progress.line(TASK)
    assert "s draft: an answer, 3 tokens" in progress.line(draft)
