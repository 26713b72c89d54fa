"""One auction as a pure state machine, played with scripted agents and a hand-driven clock."""

from __future__ import annotations

import random
from datetime import timedelta
from uuid import uuid4

from agents.scripted_agent import ScriptedAgent
from marketplace.core.paper_auction import PaperAuction
from marketplace.testing.market import T0, WEIGHTS, WINDOWS, Market
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidSubmitted,
    CodingInputs,
    JuryCalled,
    RefinementCalled,
    ReviewSubmitted,
    SubmissionRejected,
    TaskPosted,
    Weights,
)


def task(task_id: str = "t1", budget: float | None = None) -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt="def f(): ...",
        inputs=CodingInputs(entry_point="f"),
        budget=budget,
    )


def test_a_full_auction_with_jury_and_refinement_awards_the_refined_cheap_bid() -> None:
    scores = {"large": 4.0, "small:0": 1.0, "small:1": 5.0}
    small = ScriptedAgent("small", price=0.05, scores=scores, refined_plan_tokens=60)
    large = ScriptedAgent("large", price=0.36, scores=scores)
    market = Market(small, large)
    market.post(task())
    market.step()
    [jury0, jury1] = market.of(JuryCalled)
    assert {b.agent_id for b in jury0.bids} == {"small", "large"} and jury0.jurors == [
        "large",
        "small",
    ]
    [refinement] = market.of(RefinementCalled)
    assert refinement.provisional_agent_id == "large"
    assert [i.agent_id for i in refinement.invites] == ["small"]
    assert [b.agent_id for b in jury1.bids] == ["small"] and jury1.round == 1
    [closed] = market.of(AuctionClosed)
    assert closed.reason == "refined" and closed.winner_agent_id == "small"
    assert len(closed.bids) == 3 and closed.weights == WEIGHTS
    assert closed.winning_plan == jury1.bids[0].plan
    assert market.now == T0  # every phase closed early: everyone answered


def test_a_juror_whose_weight_is_zero_is_not_asked() -> None:
    weights = WEIGHTS.model_copy(update={"jurors": {"large": 0.0}})
    small, large = ScriptedAgent("small", price=0.05), ScriptedAgent("large", price=0.36)
    market = Market(small, large, weights=weights)
    market.post(task())
    market.step()
    assert all(jury.jurors == ["small"] for jury in market.of(JuryCalled))
    assert {r.juror for r in market.of(ReviewSubmitted)} == {"small"}
    [closed] = market.of(AuctionClosed)
    assert all(set(b.jury) == {"small"} for b in closed.bids)


def test_with_no_weighted_juror_the_jury_phase_ends_at_once() -> None:
    weights = Weights(cost=0.05, entropy=0.0, jury=0.0)
    market = Market(ScriptedAgent("a", price=0.1), ScriptedAgent("b", price=0.2), weights=weights)
    market.post(task())
    market.step()
    assert [j.jurors for j in market.of(JuryCalled)] == [[]]
    assert market.of(ReviewSubmitted) == []
    [closed] = market.of(AuctionClosed)
    assert closed.winner_agent_id == "a" and market.now == T0


def test_no_refinement_when_the_cheapest_agent_already_leads() -> None:
    small = ScriptedAgent("small", price=0.05, refined_plan_tokens=50)
    large = ScriptedAgent("large", price=0.36)
    market = Market(small, large)
    market.post(task())
    market.step()
    [closed] = market.of(AuctionClosed)
    assert closed.reason == "awarded" and closed.winner_agent_id == "small"
    assert market.of(RefinementCalled) == []


def test_a_silent_agent_holds_bidding_open_until_the_window_ends() -> None:
    market = Market(ScriptedAgent("a", price=0.1), ScriptedAgent("mute", price=0.2, bids=False))
    market.post(task())
    assert [type(e) for e in market.step()] == [AuctionOpened]
    assert market.step(seconds=9.9) == []
    [jury] = [e for e in market.step(seconds=0.1) if isinstance(e, JuryCalled)]
    assert [b.agent_id for b in jury.bids] == ["a"]
    assert market.of(AuctionClosed)[0].winner_agent_id == "a"


def test_a_juror_that_never_answers_is_waited_for_then_filled_in() -> None:
    judge = ScriptedAgent("judge", price=0.1, scores={"judge": 4.0})
    lazy = ScriptedAgent("lazy", price=0.2, judges=False)
    market = Market(judge, lazy)
    market.post(task())
    market.step()
    assert market.of(AuctionClosed) == []
    market.step(seconds=10)
    [closed] = market.of(AuctionClosed)
    assert all(b.jury["lazy"] is None for b in closed.bids)
    assert closed.winner_agent_id == "judge"


def test_no_bids_closes_with_reason_no_bids() -> None:
    market = Market(ScriptedAgent("mute", price=0.1, bids=False))
    market.post(task())
    market.step()
    market.step(seconds=10)
    [closed] = market.of(AuctionClosed)
    assert closed.reason == "no_bids" and closed.winner_bid_id is None


def test_late_duplicate_unknown_and_uninvited_submissions_are_rejected_with_reasons() -> None:
    a = ScriptedAgent("a", price=0.1)
    market = Market(a, ScriptedAgent("b", price=0.2))
    market.post(task())
    market.step()  # both bid, jury called and answered, auction closed
    late = a.answer(task())[0]
    stranger = ScriptedAgent("stranger", price=0.01).answer(task())[0]
    uninvited = late.model_copy(update={"round": 1, "event_id": uuid4(), "bid_id": uuid4()})
    for event in (late, stranger, uninvited):
        market.deliver(event)
    rejected = {
        r.rejected_event_id: r.reason for r in market.step() if isinstance(r, SubmissionRejected)
    }
    assert rejected == {
        late.event_id: "late",
        stranger.event_id: "unknown_agent",
        uninvited.event_id: "not_invited",
    }
    assert len(market.of(AuctionClosed)) == 1


def test_a_second_bid_from_the_same_agent_is_a_duplicate_and_a_redelivery_is_nothing() -> None:
    a = ScriptedAgent("a", price=0.1)
    market = Market(a, ScriptedAgent("b", price=0.2, bids=False))
    market.post(task())
    market.step(answer=False)
    first, second = a.answer(task())[0], a.answer(task())[0]
    for event in (first, first, second):
        market.deliver(event)
    [rejected] = market.step(answer=False)
    assert rejected.reason == "duplicate" and rejected.rejected_event_id == second.event_id


def test_a_dead_agent_is_not_waited_for_and_its_bid_is_refused() -> None:
    live = ScriptedAgent("live", price=0.1)
    dying = ScriptedAgent("dying", price=0.05)
    market = Market(live, dying, ttl_s=5)
    market.roster.apply(
        live.heartbeat().model_copy(update={"occurred_at": T0 + timedelta(seconds=6)})
    )
    market.post(task())
    market.now = T0 + timedelta(seconds=6)
    market.step(answer=False)
    assert market.auction.opened.agents == ["live"]
    market.deliver(dying.answer(task())[0])
    [rejected] = market.step(answer=False)
    assert rejected.reason == "dead_agent"


def test_over_budget_bids_are_ineligible_and_recorded() -> None:
    market = Market(
        ScriptedAgent("cheap", price=1.0, plan_tokens=10),
        ScriptedAgent("dear", price=1000.0, plan_tokens=10, scores={"dear": 5}),
    )
    market.post(task(budget=0.001))
    market.step()
    [closed] = market.of(AuctionClosed)
    assert closed.winner_agent_id == "cheap"
    dear = next(b for b in closed.bids if b.agent_id == "dear")
    assert not dear.eligible and "budget" in dear.ineligible_reason


def test_an_agent_that_appears_mid_stream_joins_the_next_auction() -> None:
    market = Market(ScriptedAgent("old", price=0.1))
    market.post(task("first"))
    market.step()
    newcomer = ScriptedAgent("new", price=0.05)
    market.agents["new"] = newcomer
    market.roster.apply(newcomer.heartbeat().model_copy(update={"occurred_at": T0}))
    market.post(task("second"))
    market.step()
    assert market.auction.opened.agents == ["new", "old"]
    assert market.of(AuctionClosed)[-1].winner_agent_id == "new"


def test_rebuilding_from_the_log_in_any_order_continues_without_repeating_decisions() -> None:
    small = ScriptedAgent(
        "small", price=0.05, refined_plan_tokens=60, scores={"large": 4, "small:1": 5}
    )
    large = ScriptedAgent("large", price=0.36, scores={"large": 4, "small:1": 5})
    market = Market(small, large)
    market.post(task())
    market.step()
    refinement_at = next(i for i, e in enumerate(market.log) if isinstance(e, RefinementCalled))
    history = market.log[: refinement_at + 1]  # crashed just after calling refinement
    for seed in range(5):
        shuffled = list(history)
        random.Random(seed).shuffle(shuffled)
        rebuilt = PaperAuction("t1")
        for event in shuffled:
            rebuilt.apply(event)
        assert rebuilt.phase == "refining"
        assert rebuilt.settle(market.roster, WINDOWS, WEIGHTS, T0) == []  # nothing to redo
        rebuilt.apply(small.answer(market.of(RefinementCalled)[0])[0])
        [jury1] = rebuilt.settle(market.roster, WINDOWS, WEIGHTS, T0)
        assert isinstance(jury1, JuryCalled) and jury1.round == 1


def test_a_closed_auction_rebuilt_from_its_log_decides_nothing_more() -> None:
    market = Market(ScriptedAgent("a", price=0.1), ScriptedAgent("b", price=0.2))
    market.post(task())
    market.step()
    rebuilt = PaperAuction("t1")
    for event in reversed(market.log):
        rebuilt.apply(event)
    assert rebuilt.phase == "closed"
    assert rebuilt.settle(market.roster, WINDOWS, WEIGHTS, T0 + timedelta(hours=1)) == []
    assert not any(isinstance(e, BidSubmitted) for e in rebuilt.pending)
