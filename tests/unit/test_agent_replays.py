"""An agent answers an event once, and no call older than its replay window
(`agents.handled`, `LLMAgent.respond`); the ids it answered outlive it in a file."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.agent import LLMAgent
from agents.backends.scripted import ScriptedLLM
from agents.handled import Handled
from marketplace.shared.config import AgentConfig
from tests.unit.test_agent_protocol import ME, call, jury, lean_close, paper_close, task

NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def agent(mechanism: str = "lean", now: datetime = NOW) -> LLMAgent:
    config = AgentConfig(
        id=ME, backend="scripted", model="m", input_price=0.1, output_price=0.1, kinds=["general"]
    )
    return LLMAgent(config, ScriptedLLM(config.model), mechanism, clock=lambda: now)


def dated(event, at: datetime = NOW):
    return event.model_copy(update={"occurred_at": at})


async def test_a_call_answered_once_is_not_answered_again_nor_drafted() -> None:
    a = agent()
    await a.respond(dated(task()))
    first = dated(call())
    [draft] = await a.respond(first)
    a.answered(first)
    calls = len(a.llm.calls)
    assert await a.respond(first) == []
    assert len(a.llm.calls) == calls  # no model call
    assert draft.agent_id == ME


async def test_a_call_is_answered_again_until_its_answer_is_sent() -> None:
    """Killed before the reply went out, the call must still be answered (restart recovery)."""
    a = agent()
    await a.respond(dated(task()))
    [_] = await a.respond(dated(call()))
    assert len(await a.respond(dated(call()).model_copy())) == 1  # a new call, a new id
    same = dated(call())
    await a.respond(same)
    assert len(await a.respond(same)) == 1  # not marked answered: answered again


async def test_an_award_answered_once_delivers_once() -> None:
    a = agent()
    await a.respond(dated(task()))
    closed = dated(lean_close())
    [_] = await a.respond(closed)
    a.answered(closed)
    assert await a.respond(closed) == []


async def test_a_call_or_award_older_than_the_window_is_refused_by_its_signed_date() -> None:
    a = agent(now=NOW + HOUR + timedelta(seconds=1))
    await a.respond(dated(task()))
    assert await a.respond(dated(call())) == []
    assert await a.respond(dated(lean_close())) == []
    assert a.llm.calls == []
    young = agent(now=NOW + HOUR - timedelta(seconds=1))
    await young.respond(dated(task()))
    assert len(await young.respond(dated(call()))) == 1


async def test_a_stale_paper_task_is_remembered_but_not_bid_on() -> None:
    a = agent("paper", now=NOW + 2 * HOUR)
    assert await a.respond(dated(task())) == []
    assert "t1" in a.tasks and a.llm.calls == []
    assert await a.respond(dated(jury())) == []  # and its stale jury


async def test_a_replayed_task_still_teaches_the_task_to_a_restarted_agent() -> None:
    """A task redelivered after a crash is not answered again, but its award still finds it."""
    first = agent("paper")
    posted = dated(task())
    [_] = await first.respond(posted)
    first.answered(posted)
    second = agent("paper")
    second.handled = first.handled
    assert await second.respond(posted) == []
    [result] = await second.respond(dated(paper_close()))
    assert result.error != "the task is unknown to this agent"


def test_the_ids_answered_outlive_the_process_and_the_file_is_cut_to_the_window(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "a.handled"
    old, young = uuid.uuid4(), uuid.uuid4()
    kept = Handled(HOUR)
    assert kept.keep_in(path, NOW) == 0
    kept.add([(old, NOW - 2 * HOUR), (young, NOW - HOUR / 2)], NOW - HOUR)
    with path.open("a") as file:
        file.write("cut sho")  # a crash mid-line
    again = Handled(HOUR)
    assert again.keep_in(path, NOW) == 1
    assert young in again and old not in again
    assert len(path.read_text().splitlines()) == 1  # the file holds the window only


def test_ids_out_of_the_window_are_forgotten_in_memory() -> None:
    kept = Handled(HOUR)
    first, second = uuid.uuid4(), uuid.uuid4()
    kept.add([(first, NOW)], NOW)
    kept.add([(second, NOW + 2 * HOUR)], NOW + 2 * HOUR)
    assert first not in kept and second in kept and len(kept) == 1
