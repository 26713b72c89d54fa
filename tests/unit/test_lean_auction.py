"""One lean auction as a pure state machine, played with scripted agents and a hand-driven clock.

The priors make small the first agent asked and large the reserve (value 1, see test_lean.py):
r_small = 0.9 − 0.01 / 0.5 = 0.88 and r_large = 0.95 − 0.2 / 0.8 = 0.70. A passing draft of
small is worth 0.9 and stops the calls; a failing one is worth 0 and escalates to large.
"""

from __future__ import annotations

import random
from datetime import timedelta
from functools import partial

import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace.core import lean_policy
from marketplace.core.lean_auction import LeanAuction, prior_for
from marketplace.shared.config import PriorConfig
from marketplace.testing import market as in_memory
from marketplace.testing.market import T0, WINDOWS
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidRequested,
    BidSubmitted,
    CodingInputs,
    GeneralInputs,
    SubmissionRejected,
    TaskPosted,
    TaskResult,
)

VALUE = 1.0
SETTINGS = lean_policy.Settings(value=VALUE)
PRIORS = {
    "small": PriorConfig(examples_pass=0.5, right_if_pass=0.9, right_if_fail=0.0, cost=0.01),
    "large": PriorConfig(examples_pass=0.8, right_if_pass=0.95, right_if_fail=0.1, cost=0.2),
}


def task(task_id: str = "t1") -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt="def f(): ...",
        inputs=CodingInputs(entry_point="f", examples=["assert f(1) == 2"]),
    )


def small(**settings: object) -> ScriptedAgent:
    return ScriptedAgent("small", price=0.05, mechanism="lean", **settings)


def large(**settings: object) -> ScriptedAgent:
    return ScriptedAgent("large", price=0.36, mechanism="lean", **settings)


Market = partial(in_memory.Market, mechanism="lean", priors=PRIORS, settings=SETTINGS)


def test_one_passing_cheap_draft_is_awarded_and_delivered_as_it_is() -> None:
    market = Market(small(), large())
    market.post(task())
    decided = market.step()
    assert [type(e) for e in decided] == [AuctionOpened, BidRequested, AuctionClosed]
    opened, call, closed = decided
    assert opened.mechanism == "lean" and opened.agents == ["large", "small"]
    assert (call.call, call.agent_id, call.why, call.feedback) == (1, "small", "first", None)
    assert [(e.agent_id, e.price) for e in call.estimates] == [("large", 0.36), ("small", 0.05)]
    assert {e.agent_id: e.reservation for e in call.estimates} == {
        "small": pytest.approx(0.88),
        "large": pytest.approx(0.70),
    }
    [draft] = market.of(BidSubmitted)
    assert closed.reason == "awarded" and closed.mechanism == "lean"
    assert (closed.winner_agent_id, closed.winner_bid_id) == ("small", draft.bid_id)
    assert closed.winning_plan == draft.plan and closed.bids == []
    assert closed.lean.why == "no agent left to ask can beat small's draft (0.9)"
    assert [(d.agent_id, d.examples_pass, d.worth) for d in closed.lean.drafts] == [
        ("small", True, pytest.approx(0.9))
    ]
    [result] = market.of(TaskResult)
    assert (result.agent_id, result.bid_id, result.output) == ("small", draft.bid_id, draft.plan)
    assert result.cost == 0 and result.usage.requests == 0 and result.error is None
    assert market.now == T0  # decided as soon as the draft came


def test_a_failing_cheap_draft_escalates_to_the_dear_agent_with_it_as_feedback() -> None:
    market = Market(small(draft_passes=False), large())
    market.post(task())
    market.step()
    first, second = market.of(BidRequested)
    assert (first.agent_id, second.agent_id) == ("small", "large")
    small_draft, large_draft = market.of(BidSubmitted)
    assert second.why == "large may beat the draft in hand (0.7 > 0)"
    assert second.feedback.agent_id == "small" and second.feedback.source == small_draft.plan
    assert second.feedback.error == small_draft.failure and second.fixes
    assert [(d.agent_id, d.examples_pass, d.worth) for d in second.drafts] == [
        ("small", False, 0.0)
    ]
    assert second.estimates == first.estimates and second.value == first.value
    assert "fixing small's" in large_draft.plan
    [closed] = market.of(AuctionClosed)
    assert closed.winner_agent_id == "large" and closed.winning_plan == large_draft.plan
    assert [d.agent_id for d in closed.lean.drafts] == ["small", "large"]


def test_an_agent_that_does_not_answer_by_the_deadline_is_passed_over() -> None:
    market = Market(small(drafts=False), large())
    market.post(task())
    assert [type(e) for e in market.step()] == [AuctionOpened, BidRequested]
    assert market.step(seconds=9.9) == []
    [call, closed] = market.step(seconds=0.1)
    assert (call.agent_id, call.unanswered, call.why, call.feedback) == (
        "large",
        ["small"],
        "first",
        None,
    )
    assert call.deadline == T0 + timedelta(seconds=20)
    assert closed.winner_agent_id == "large" and closed.lean.unanswered == ["small"]


def test_an_agent_that_dies_while_asked_is_passed_over_at_once() -> None:
    market = Market(small(drafts=False), large(), ttl_s=5)
    market.post(task())
    market.step()
    beat = (
        market.agents["large"]
        .heartbeat()
        .model_copy(update={"occurred_at": T0 + timedelta(seconds=6)})
    )
    market.roster.apply(beat)  # large is still beating; small went quiet
    decided = market.step(seconds=6)
    assert [e.agent_id for e in decided if isinstance(e, BidRequested)] == ["large"]
    assert market.of(AuctionClosed)[0].winner_agent_id == "large"


def test_no_draft_at_all_closes_with_no_bids() -> None:
    market = Market(small(drafts=False))
    market.post(task())
    market.step()
    [closed] = market.step(seconds=10)
    assert closed.reason == "no_bids" and closed.winner_bid_id is None
    assert closed.lean.why == "nobody answered" and closed.lean.unanswered == ["small"]


def test_with_nobody_live_at_the_open_a_newcomer_is_asked_before_the_deadline() -> None:
    market = Market()
    market.post(task())
    [opened] = market.step()
    assert opened.agents == []
    newcomer = small()
    newcomer.answer(task())  # it has read the task: its heartbeat is what comes late
    market.agents["small"] = newcomer
    market.roster.apply(newcomer.heartbeat().model_copy(update={"occurred_at": T0}))
    decided = market.step(seconds=1)
    assert [type(e) for e in decided] == [BidRequested, AuctionClosed]
    lonely = Market()
    lonely.post(task("t2"))
    lonely.step()
    [closed] = lonely.step(seconds=10)
    assert closed.reason == "no_bids" and closed.lean.estimates == []


def test_uninvited_late_duplicate_unknown_and_plan_bids_are_rejected_with_reasons() -> None:
    s, big = small(), large()
    market = Market(s, big)
    market.post(task())
    market.step(answer=False)  # opened, small asked
    [call] = market.of(BidRequested)
    stranger = ScriptedAgent("stranger", price=0.01, mechanism="lean")
    for agent in (s, big, stranger):
        agent.answer(task())  # the task, which the call needs
    first, second = s.answer(call)[0], s.answer(call)[0]
    uninvited = big.answer(call.model_copy(update={"agent_id": "large"}))[0]
    unknown = stranger.answer(call.model_copy(update={"agent_id": "stranger"}))[0]
    plan = ScriptedAgent("small", price=0.05).answer(task())[0]  # a paper agent's plan bid
    for event in (first, first, second, uninvited, unknown, plan):
        market.deliver(event)
    decided = market.step(answer=False)
    rejected = {r.rejected_event_id: r.reason for r in decided if isinstance(r, SubmissionRejected)}
    assert rejected == {
        second.event_id: "duplicate",
        uninvited.event_id: "not_invited",
        unknown.event_id: "unknown_agent",
        plan.event_id: "wrong_round",
    }
    [closed] = market.of(AuctionClosed)
    assert closed.winner_bid_id == first.bid_id
    late = s.answer(call)[0]
    market.deliver(late)
    [rejection] = market.step(answer=False)
    assert (rejection.rejected_event_id, rejection.reason) == (late.event_id, "late")


def test_rebuilding_from_the_log_in_any_order_continues_without_repeating_decisions() -> None:
    market = Market(small(draft_passes=False), large())
    market.post(task())
    market.step()
    second_call = next(e for e in market.log if isinstance(e, BidRequested) and e.call == 2)
    history = market.log[: market.log.index(second_call) + 1]  # crashed after calling large
    [answer] = [b for b in market.of(BidSubmitted) if b.agent_id == "large"]
    [original] = market.of(AuctionClosed)
    for seed in range(5):
        shuffled = list(history)
        random.Random(seed).shuffle(shuffled)
        rebuilt = LeanAuction("t1")
        for event in shuffled:
            rebuilt.apply(event)
        assert rebuilt.phase == "calling" and rebuilt.call == second_call
        assert rebuilt.settle(market.roster, WINDOWS, VALUE, T0) == []  # nothing to redo
        rebuilt.apply(answer)
        [closed] = rebuilt.settle(market.roster, WINDOWS, VALUE, T0)
        assert decision(closed) == decision(original)


def decision(closed: AuctionClosed) -> dict:
    """The close without its envelope."""
    return closed.model_dump(exclude={"event_id", "occurred_at"})


def test_a_closed_auction_rebuilt_from_its_log_decides_nothing_more() -> None:
    market = Market(small(draft_passes=False), large())
    market.post(task())
    market.step()
    rebuilt = LeanAuction("t1")
    for event in reversed(market.log):
        rebuilt.apply(event)
    assert rebuilt.phase == "closed"
    assert rebuilt.settle(market.roster, WINDOWS, VALUE, T0 + timedelta(hours=1)) == []


def test_an_agent_without_a_prior_gets_an_agnostic_one_priced_by_its_output_price() -> None:
    assert prior_for({}, "new", price=2.0) == lean_policy.Prior(0.5, 0.5, 0.0, cost=2.0e-4)
    assert prior_for(PRIORS, "small", price=2.0) == lean_policy.Prior(0.5, 0.9, 0.0, 0.01)


# --- general tasks: where `[auction.lean] uncheckable` says -----------------------------------

CODER_PRIORS = {  # fitted on code: large first (r 0.93 against small's 0.4)
    "small": PriorConfig(examples_pass=0.1, right_if_pass=0.5, right_if_fail=0.0, cost=0.01),
    "large": PriorConfig(examples_pass=0.9, right_if_pass=0.95, right_if_fail=0.0, cost=0.02),
}


def ask(task_id: str = "a1") -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind="general",
        prompt="Name three primes.",
        inputs=GeneralInputs(),
    )


def ruled(rule: str) -> lean_policy.Settings:
    return lean_policy.Settings(value=VALUE, uncheckable=rule)


def test_a_general_task_goes_to_the_likeliest_right_by_default_with_no_memory_the_largest() -> None:
    market = Market(small(), large(), priors=CODER_PRIORS)
    market.post(ask())
    market.step()
    [call] = market.of(BidRequested)
    assert call.agent_id == "large" and call.checkable  # an answer is checked for being there
    assert (
        call.why == "no example to check a draft against: the likeliest right, large (P(right) 0.9)"
    )
    [closed] = market.of(AuctionClosed)
    [answer] = market.of(BidSubmitted)
    assert (closed.winner_agent_id, closed.winning_plan) == ("large", "scripted answer of large")
    assert closed.winning_plan == answer.plan
    assert closed.lean.why == "no agent left to ask can beat large's draft (1)"
    [delivered] = market.of(TaskResult)
    assert delivered.output == answer.plan


@pytest.mark.parametrize(
    ("rule", "general", "unchecked_coding"),
    [
        ("likeliest", "large", "large"),
        ("cheapest", "small", "small"),
        ("dearest", "large", "large"),
        ("small", "small", "small"),
    ],
)
def test_general_and_unchecked_coding_tasks_follow_the_one_rule(
    rule: str, general: str, unchecked_coding: str
) -> None:
    unchecked = task().model_copy(update={"inputs": CodingInputs(entry_point="f")})
    for posted, expected in ((ask(), general), (unchecked, unchecked_coding)):
        market = Market(small(), large(), priors=CODER_PRIORS, settings=ruled(rule))
        market.post(posted)
        market.step()
        assert [c.agent_id for c in market.of(BidRequested)] == [expected]
        assert market.of(AuctionClosed)[0].winner_agent_id == expected


def test_an_empty_general_answer_goes_on_to_the_next_agent() -> None:
    market = Market(small(), large(draft_passes=False), priors=CODER_PRIORS)
    market.post(ask())
    market.step()
    assert [c.agent_id for c in market.of(BidRequested)] == ["large", "small"]
    [closed] = market.of(AuctionClosed)
    assert closed.winner_agent_id == "small"


@pytest.mark.parametrize("rule", ["likeliest", "cheapest", "dearest", "small"])
def test_an_uncheckable_auction_under_any_rule_replays_clean(rule: str) -> None:
    from marketplace.log import replay

    for failing in (False, True):
        agents = (small(draft_passes=not failing), large(draft_passes=not failing))
        market = Market(*agents, priors=CODER_PRIORS, settings=ruled(rule))
        market.post(ask())
        market.step()
        assert replay.verify(market.log) == []


def test_the_general_prior_is_the_same_for_every_agent_but_its_price() -> None:
    assert prior_for(PRIORS, "small", price=2.0, kind="general") == lean_policy.Prior(
        0.9, 1.0, 0.0, cost=2.0e-4
    )
