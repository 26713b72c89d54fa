"""What a client gets back: the `Outcome` folded from a task's events, in any order.

The events are a real auction's, played in memory (`marketplace.testing.market`) with scripted
agents, then a result and the verifier's outcome as the services would publish them.
"""

from __future__ import annotations

import random
from functools import partial

import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace.client import Refused, SubmitTimeout, missing
from marketplace.log.outcomes import Outcome, complete, fold
from marketplace.testing import market as in_memory
from schemas.events import (
    AuctionClosed,
    BidSubmitted,
    CodingInputs,
    Event,
    TaskOutcome,
    TaskPosted,
    TaskResult,
)

Market = partial(in_memory.Market, mechanism="lean")


def task(task_id: str = "t1") -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt="def f(): ...",
        inputs=CodingInputs(entry_point="f", examples=["assert f() is None"]),
        tenant="acme",
    )


def auction(*agents: ScriptedAgent, passed: bool | None = True) -> list[Event]:
    """A whole task's events: the auction, the winner's delivery, the verifier's outcome."""
    m = Market(*agents)
    m.post(task())
    m.step()
    events = list(m.log)
    [result] = [e for e in events if isinstance(e, TaskResult)]
    verdict = TaskOutcome(
        producer="verifier",
        task_id=result.task_id,
        passed=passed,
        score=1.0 if passed else 0.0,
        details="ok: exit code 0" if passed else "AssertionError",
    )
    return [*events, verdict]


def small(**settings: object) -> ScriptedAgent:
    return ScriptedAgent("small", price=0.05, mechanism="lean", **settings)


def large(**settings: object) -> ScriptedAgent:
    return ScriptedAgent("large", price=0.36, mechanism="lean", **settings)


def test_a_verified_task_has_its_winner_answer_cost_and_verdict() -> None:
    events = auction(small(), large())
    outcome = fold("t1", events)
    assert outcome.status == "passed" and outcome.final and complete("t1", events)
    assert (outcome.kind, outcome.tenant, outcome.mechanism) == ("coding", "acme", "lean")
    assert (outcome.winner_agent_id, outcome.model) == ("small", "scripted-small")
    assert outcome.output.startswith("# scripted draft of small")
    assert (outcome.passed, outcome.score, outcome.detail) == (True, 1.0, "ok: exit code 0")
    # the agnostic prior asks the cheaper first: only small drafted, its tokens at 0.05
    [draft] = [e for e in events if isinstance(e, BidSubmitted)]
    assert outcome.usage == draft.usage and draft.usage.prompt_tokens > 0
    assert outcome.cost == pytest.approx(0.05 * draft.usage.total_tokens / 1e6)


def test_every_draft_counts_in_the_cost_and_the_winner_is_the_dearer_one() -> None:
    events = auction(small(draft_passes=False), large(), passed=False)
    outcome = fold("t1", events)
    assert (outcome.status, outcome.winner_agent_id, outcome.passed) == ("failed", "large", False)
    small_draft, large_draft = [e for e in events if isinstance(e, BidSubmitted)]
    assert outcome.cost == pytest.approx(small_draft.usage.cost + large_draft.usage.cost)
    assert large_draft.usage.cost > small_draft.usage.cost > 0
    assert outcome.detail == "AssertionError"


def test_the_answer_s_tokens_are_the_winning_draft_s_not_every_draft_s() -> None:
    """What a front door's `finish_reason` reads: the tokens the answer took (the winning
    draft's, delivered without a model call), not the task's total."""
    events = auction(small(draft_passes=False), large(), passed=False)
    outcome = fold("t1", events)
    _, large_draft = [e for e in events if isinstance(e, BidSubmitted)]
    assert outcome.answer_tokens == large_draft.plan_tokens > 0
    assert outcome.usage.completion_tokens > outcome.answer_tokens  # small's draft too
    assert fold("t1", [e for e in events if not isinstance(e, TaskResult)]).answer_tokens is None


def test_the_order_events_are_read_in_changes_nothing() -> None:
    events = auction(small(draft_passes=False), large())
    expected = fold("t1", events)
    shuffled = list(events)
    for seed in range(20):
        random.Random(seed).shuffle(shuffled)
        assert fold("t1", shuffled) == expected
        assert complete("t1", shuffled)


def test_the_status_so_far_follows_the_task_through_its_life() -> None:
    events = auction(small(), large())
    closed = next(i for i, e in enumerate(events) if isinstance(e, AuctionClosed))
    results = next(i for i, e in enumerate(events) if isinstance(e, TaskResult))
    assert fold("t1", events[:1]).status == "posted"
    assert fold("t1", events[:2]).status == "open"
    assert fold("t1", events[: closed + 1]).status == "awarded"
    assert fold("t1", events[: results + 1]).status == "delivered"
    assert not complete("t1", events[: results + 1])  # the verifier has not spoken
    assert fold("other", events) is None


def test_an_auction_without_a_winner_is_final_at_its_close() -> None:
    m = Market(small(drafts=False))
    m.post(task())
    m.step()
    m.step(seconds=10)
    outcome = fold("t1", m.log)
    assert (outcome.status, outcome.final, outcome.reason) == ("no_bids", True, "no_bids")
    assert complete("t1", m.log) and outcome.winner_agent_id is None
    assert outcome.detail == "nobody answered"


def test_a_timeout_names_the_step_still_missing() -> None:
    posted = Outcome(task_id="t1", status="posted", kind="general")
    awarded = Outcome(task_id="t1", status="awarded", winner_agent_id="small")
    delivered = Outcome(task_id="t1", status="delivered")
    assert "the auction has not closed" in missing(posted)
    assert "live agent taking general tasks" in missing(posted)
    assert missing(awarded) == "the winner, small, has delivered no result"
    assert "the verifier has not judged the result" in missing(delivered)
    late = SubmitTimeout("t1", 2.5, delivered)
    assert str(late).startswith("task t1: no answer within 2.5 s: the verifier has not judged")
    assert late.outcome is delivered


def test_a_refusal_says_why() -> None:
    refused = Outcome(task_id="t1", status="refused", reason="over_budget", detail="acme is out")
    error = Refused(refused)
    assert (error.reason, error.detail, error.task_id) == ("over_budget", "acme is out", "t1")
    assert str(error) == "task t1 refused: over_budget: acme is out"
