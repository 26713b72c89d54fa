"""Replay, counterfactuals and audit on hand-built auctions: no broker, no database.

Each auction is built with the real mechanism (`scoring.score_bid`, `scoring.decide`), the way
the auctioneer builds it, so an untouched one must verify clean and any change must be named.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace.core import scoring, spend
from marketplace.log import audit, replay
from marketplace.log.lines import bid_label
from marketplace.log.replay.discrepancy import Discrepancy
from marketplace.log.replay.rescoring import redecide
from marketplace.log.store import StoredEvent
from marketplace.shared.config import ConfigError, load_weights
from marketplace.testing.market import WINDOWS, Market
from schemas.events import (
    AuctionClosed,
    BidRequested,
    BidScore,
    BidSubmitted,
    CodingInputs,
    Event,
    ReviewSubmitted,
    ScoredBid,
    SubmissionRejected,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
    Weights,
)

W = Weights(cost=0.05, entropy=0.0, jury=1.0)
JURORS = ["large", "small"]


def bid(task_id: str, agent: str, price: float, tokens: int, round_: int = 0) -> BidSubmitted:
    return BidSubmitted(
        producer=agent,
        task_id=task_id,
        agent_id=agent,
        model=f"m-{agent}",
        round=round_,
        plan=f"plan of {agent}:{round_}",
        plan_tokens=tokens,
        entropy=1.0,
        price=price,
        usage=Usage(requests=1, prompt_tokens=50, completion_tokens=tokens, cost=price * 1e-4),
    )


def review(
    task_id: str, juror: str, round_: int, bids: list[BidSubmitted], scores: dict[str, float]
) -> ReviewSubmitted:
    return ReviewSubmitted(
        producer=juror,
        task_id=task_id,
        juror=juror,
        round=round_,
        scores=[BidScore(bid_id=b.bid_id, score=_given(scores, juror, b)) for b in bids],
        usage=Usage(requests=1, prompt_tokens=10, completion_tokens=2, cost=1e-6),
    )


def _given(scores: dict[str, float], juror: str, bid: BidSubmitted) -> float:
    label = bid_label(bid)
    return scores.get(f"{juror}/{label}", scores[label])


def score(
    bids: list[BidSubmitted],
    reviews: list[ReviewSubmitted],
    weights: Weights,
    budget: float | None = None,
) -> list[ScoredBid]:
    """As the auctioneer scores a round: every juror's score of every bid, None if missing."""
    given = {r.juror: {s.bid_id: s.score for s in r.scores} for r in reviews}
    return [
        scoring.score_bid(b, {j: given.get(j, {}).get(b.bid_id) for j in JURORS}, weights, budget)
        for b in bids
    ]


def close(task_id: str, scored: list[ScoredBid], weights: Weights) -> AuctionClosed:
    decision = scoring.decide(scored)
    winner = decision.winner
    return AuctionClosed(
        producer="auctioneer",
        task_id=task_id,
        reason=decision.reason,
        winner_bid_id=winner.bid_id if winner else None,
        winner_agent_id=winner.agent_id if winner else None,
        winning_plan=f"plan of {bid_label(winner)}" if winner else "",
        weights=weights,
        bids=scored,
    )


def posted(task_id: str, budget: float | None = None) -> TaskPosted:
    inputs = CodingInputs(entry_point="f")
    return TaskPosted(
        producer="client", task_id=task_id, kind="coding", prompt="def f(): ...", inputs=inputs
    ).model_copy(update={"budget": budget})


def played(
    task_id: str, agents: list[ScriptedAgent], outcome: TaskOutcome, budget: float | None = None
) -> list[Event]:
    """The auction as the state machine plays it among `agents`, then the verifier's outcome."""
    market = Market(*agents, weights=W)
    market.post(posted(task_id, budget))
    market.step()
    market.step(seconds=WINDOWS.refine.total_seconds())  # a refinement nobody answers times out
    return [*market.log, outcome]


def refined_auction(task_id: str = "t-refined") -> list[Event]:
    """large is the provisional winner; small, cheaper, refines and wins: every phase runs.
    The jurors agree but on large's plan (small gives it 3, large 4)."""
    agreed = {"small:0": 1.0, "small:1": 5.0}
    small = ScriptedAgent("small", 0.05, scores={**agreed, "large:0": 3.0}, refined_plan_tokens=60)
    large = ScriptedAgent("large", 0.36, scores={**agreed, "large:0": 4.0})
    outcome = TaskOutcome(
        producer="verifier", task_id=task_id, passed=False, score=0.0, details="0/3"
    )
    return played(task_id, [small, large], outcome)


def plain_auction(task_id: str = "t-plain", budget: float | None = None) -> list[Event]:
    """large wins outright; small does not refine."""
    scores = {"large:0": 4.0, "small:0": 1.0}
    agents = [
        ScriptedAgent("small", 0.05, scores=scores),
        ScriptedAgent("large", 0.36, scores=scores),
    ]
    outcome = TaskOutcome(producer="verifier", task_id=task_id, passed=True, score=1.0)
    return played(task_id, agents, outcome, budget)


def closed_of(events: list[Event]) -> AuctionClosed:
    [closed] = [e for e in events if isinstance(e, AuctionClosed)]
    return closed


def tamper(events: list[Event], change: Any) -> list[Event]:
    """The events with the AuctionClosed's JSON changed by `change(payload)`, as a row edited in
    Postgres would read back."""
    out = []
    for event in events:
        if isinstance(event, AuctionClosed):
            payload = json.loads(event.model_dump_json())
            change(payload)
            event = AuctionClosed.model_validate_json(json.dumps(payload))
        out.append(event)
    return out


def bid_payload(payload: dict, label: str) -> dict:
    agent, round_ = label.split(":")
    return next(b for b in payload["bids"] if (b["agent_id"], b["round"]) == (agent, int(round_)))


def fields(found: list[Discrepancy]) -> set[str]:
    return {d.field for d in found}


# --- verification -------------------------------------------------------------------------------


def test_a_recorded_auction_verifies_clean_with_and_without_its_evidence() -> None:
    events = refined_auction() + plain_auction()
    assert closed_of(events[: len(refined_auction())]).reason == "refined"
    assert replay.verify(events) == []
    assert replay.verify([e for e in events if isinstance(e, AuctionClosed)]) == []


def test_a_changed_cost_weight_is_named_with_the_weight_the_terms_imply() -> None:
    found = replay.verify(tamper(refined_auction(), lambda p: p["weights"].update(cost=0.07)))
    [weight] = [d for d in found if d.field == "weights.cost"]
    assert (weight.task_id, weight.recorded) == ("t-refined", 0.07)
    assert weight.recomputed == pytest.approx(0.05)
    assert {"bids[small:0].cost", "bids[large:0].score", "bids[small:1].cost"} <= fields(found)
    assert "weights.entropy" not in fields(found)


@pytest.mark.parametrize(
    ("change", "name", "recorded", "implied"),
    [
        ({"entropy": 0.5}, "weights.entropy", 0.5, 0.0),
        ({"jurors": {"large": 2.0}}, "weights.jurors.large", 2.0, 1.0),
        ({"jury": 3.0}, "weights.jury", 3.0, 1.0),
    ],
)
def test_a_changed_value_weight_is_named(
    change: dict, name: str, recorded: float, implied: float
) -> None:
    found = replay.verify(tamper(refined_auction(), lambda p: p["weights"].update(change)))
    [weight] = [d for d in found if d.field.startswith("weights.")]
    assert (weight.field, weight.recorded) == (name, recorded)
    assert weight.recomputed == pytest.approx(implied)


def test_a_changed_score_term_is_named() -> None:
    def change(payload: dict) -> None:
        bid_payload(payload, "large:0")["score"] = -7.0

    found = replay.verify(tamper(refined_auction(), change))
    [term] = [d for d in found if d.field == "bids[large:0].score"]
    assert (term.task_id, term.recorded, term.recomputed) == (
        "t-refined",
        -7.0,
        pytest.approx(-5.2),
    )
    assert not any(f.startswith("weights.") for f in fields(found))


def test_a_changed_jury_score_is_named_by_the_review_and_the_refinement() -> None:
    def change(payload: dict) -> None:
        bid_payload(payload, "large:0")["jury"]["small"] = 2.5
        bid_payload(payload, "small:1")["jury"]["large"] = 0.5

    events = tamper(refined_auction(), change)
    found = replay.verify(events)
    named = {d.field: d for d in found}
    assert named["bids[large:0].jury.small"].recorded == 2.5
    assert named["bids[large:0].jury.small"].recomputed == 3.0
    assert named["bids[small:1].jury.large"].recomputed == 5.0
    assert {"bids[large:0].value", "bids[small:1].value"} <= set(named)
    # With the AuctionClosed alone, the changed value terms still give it away.
    alone = replay.verify([closed_of(events)])
    assert {"bids[large:0].value", "bids[small:1].value", "bids[small:1].score"} <= fields(alone)


def test_a_changed_winner_is_named() -> None:
    events = refined_auction()
    large = next(b for b in closed_of(events).bids if b.agent_id == "large")

    def change(payload: dict) -> None:
        payload.update(winner_bid_id=str(large.bid_id), winner_agent_id="large")

    found = replay.verify(tamper(events, change))
    assert fields(found) == {"winner_bid_id", "winner_agent_id"}
    named = {d.field: d for d in found}
    assert named["winner_agent_id"].recorded == "large"
    assert named["winner_agent_id"].recomputed == "small"
    assert str(named["winner_bid_id"].recorded).startswith("large:0")


def test_a_refined_bid_that_only_ties_the_provisional_winner_does_not_win() -> None:
    """cost 1, no entropy: large:0 scores 4 − 8 = −4 and small:1 scores 6 − 10 = −4."""
    weights = Weights(cost=1.0, entropy=0.0, jury=1.0)
    task_id = "t-tie"
    round0 = [bid(task_id, "small", 0.25, 16), bid(task_id, "large", 0.5, 8)]
    round1 = [bid(task_id, "small", 0.25, 24, round_=1)]
    scores = {"large:0": 4.0, "small:0": 1.0, "small:1": 5.0}
    reviews = [review(task_id, j, 0, round0, scores) for j in JURORS]
    reviews += [review(task_id, j, 1, round1, scores) for j in JURORS]
    scored = score(round0, reviews[:2], weights) + score(round1, reviews[2:], weights)
    closed = close(task_id, scored, weights)
    assert (closed.reason, closed.winner_agent_id) == ("awarded", "large")
    assert replay.verify([closed, *reviews]) == []
    refined = next(b for b in scored if b.round == 1)
    forged = closed.model_copy(
        update={"reason": "refined", "winner_bid_id": refined.bid_id, "winner_agent_id": "small"}
    )
    assert fields(replay.verify([forged])) == {"reason", "winner_bid_id", "winner_agent_id"}
    assert redecide(closed, weights).agent_id == "large"


def test_eligibility_is_checked_against_the_budget() -> None:
    events = plain_auction(budget=0.00001)  # large's plan costs 3.6e-5: over it
    closed = closed_of(events)
    eligible = {b.agent_id: b.eligible for b in closed.bids}
    assert eligible == {"small": True, "large": False} and closed.winner_agent_id == "small"
    large = next(b for b in closed.bids if b.agent_id == "large")
    assert replay.verify(events) == []

    def change(payload: dict) -> None:
        bid_payload(payload, "large:0").update(eligible=True, ineligible_reason="")
        payload.update(winner_bid_id=str(large.bid_id), winner_agent_id="large")

    found = replay.verify(tamper(events, change))
    assert fields(found) == {"bids[large:0].eligible"}


def test_a_changed_bid_term_is_named_against_the_jury_call() -> None:
    def change(payload: dict) -> None:
        small = bid_payload(payload, "small:0")
        small.update(price=0.04, cost=0.05 * 0.04 * 100)
        small["score"] = small["cost"] - small["value"]

    found = replay.verify(tamper(plain_auction(), change))
    # the jury call has the price; the scores frozen at the refinement have the cost and score
    assert fields(found) == {"bids[small:0].price", "bids[small:0].cost", "bids[small:0].score"}
    named = {d.field: d for d in found}
    assert (named["bids[small:0].price"].recorded, named["bids[small:0].price"].recomputed) == (
        0.04,
        0.05,
    )


def test_rejected_reviews_are_not_evidence_and_a_second_close_is_flagged() -> None:
    events = plain_auction()
    small_bid = next(e for e in events if isinstance(e, BidSubmitted) and e.agent_id == "small")
    late = review("t-plain", "large", 0, [small_bid], {"small:0": 0.0})
    rejection = SubmissionRejected(
        producer="auctioneer",
        task_id="t-plain",
        agent_id="large",
        submission="review",
        rejected_event_id=late.event_id,
        reason="late",
    )
    counted = [e for e in events if isinstance(e, ReviewSubmitted) and e.juror == "large"]
    others = [e for e in events if e not in counted]
    assert replay.verify([*others, late, rejection]) == []
    found = replay.verify([*others, late])  # without its rejection, the late one disagrees
    assert fields(found) == {"bids[small:0].jury.large", "bids[large:0].jury.large"}
    assert replay.verify([*events, late]) == []  # a re-sent review after the close: ignored
    again = replay.verify([*events, closed_of(events)])
    assert again == [Discrepancy("t-plain", "AuctionClosed events", 2, 1)]


def test_the_report_names_each_task_and_field() -> None:
    events = tamper(refined_auction(), lambda p: p["weights"].update(cost=0.07))
    log = replay.Log("postgres", events + plain_auction(), [])
    text = log.report(replay.verify(log.events))
    assert text.startswith("replayed 2 closed auctions from postgres: 1 differ")
    assert "  t-refined: weights.cost: recorded 0.07, recomputed 0.05" in text
    clean = replay.Log("kafka", plain_auction(), [])
    assert clean.report([]) == "replayed 1 closed auctions from kafka: every decision verified"


# --- counterfactuals ----------------------------------------------------------------------------


def test_the_recorded_weights_change_nothing() -> None:
    summary = replay.counterfactual(refined_auction() + plain_auction(), W)
    assert summary.auctions == 2 and summary.flips == ()
    assert summary.recorded_cost == summary.counterfactual_cost
    assert (summary.outcomes, summary.passed, summary.kept_outcomes) == (2, 1, 2)


def test_weights_that_flip_winners_report_the_flips_cost_and_pass_rate() -> None:
    price_only = Weights(cost=1.0, entropy=0.0, jury=0.0)
    summary = replay.counterfactual(refined_auction() + plain_auction(), price_only)
    assert {(f.task_id, f.recorded, f.counterfactual) for f in summary.flips} == {
        ("t-plain", "large:0", "small:0"),
        ("t-refined", "small:1", "small:0"),  # small is cheapest now: nobody is invited to refine
    }
    assert summary.recorded_wins == {"large": 1, "small": 1}
    assert summary.counterfactual_wins == {"small": 2}
    assert summary.recorded_cost == pytest.approx(
        scoring.money(0.36, 100) + scoring.money(0.05, 60)
    )
    assert summary.counterfactual_cost == pytest.approx(2 * scoring.money(0.05, 100))
    assert (summary.outcomes, summary.passed, summary.kept_outcomes) == (2, 1, 0)
    text = summary.render()
    assert "winners changed in 2 of 2 auctions" in text
    assert "t-plain    large:0 → small:0" in text
    assert "pass rate: recorded 1/2 (50.0%), counterfactual 0/0 where known; 2 unknown" in text
    assert "cost=1 entropy=0 jury=0" in text


def test_a_refined_bid_wins_a_counterfactual_only_when_strictly_better() -> None:
    events = refined_auction()
    closed = closed_of(events)
    # Doubling the jury keeps the refined bid ahead; cost alone puts small:0 first.
    assert redecide(closed, W.model_copy(update={"jury": 2.0})).round == 1
    heavy_cost = Weights(cost=1000.0, entropy=0.0, jury=1.0)
    assert bid_label(redecide(closed, heavy_cost)) == "small:0"


def test_weights_load_from_a_weights_table_or_a_whole_config(tmp_path: Path) -> None:
    flat = tmp_path / "w.toml"
    flat.write_text("cost = 2\nentropy = 0.5\n[jurors]\nlarge = 3.0\n")
    assert load_weights(flat) == Weights(cost=2.0, entropy=0.5, jurors={"large": 3.0})
    whole = tmp_path / "sale.toml"
    whole.write_text("[broker]\npartitions = 2\n[auction.weights]\njury = 0.5\n")
    assert load_weights(whole) == Weights(jury=0.5)
    bad = tmp_path / "bad.toml"
    bad.write_text("cost = 'much'\n")
    with pytest.raises(ConfigError, match="cost"):
        load_weights(bad)
    with pytest.raises(ConfigError, match="no such"):
        load_weights(tmp_path / "missing.toml")


# --- audit --------------------------------------------------------------------------------------


def stored(events: list[Event]) -> list[StoredEvent]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        StoredEvent(i, "t.stream", 0, i, None, e, at + timedelta(seconds=i))
        for i, e in enumerate(events, start=1)
    ]


def test_the_audit_tells_the_whole_story() -> None:
    events = refined_auction()
    text = audit.render(stored(events))
    for event in events:
        assert event.type in text
    assert "winner: small with bid small:1 (refined)" in text
    assert "provisional large:0" in text and "invites small" in text
    assert "large scores round 0: large:0=4, small:0=1" in text
    parts = spend.parts(events)
    bids = [e for e in events if isinstance(e, BidSubmitted)]
    assert parts["bids"].cost == pytest.approx(sum(b.usage.cost for b in bids if b.round == 0))
    assert parts["refinement"].cost == pytest.approx(sum(b.usage.cost for b in bids if b.round))
    [result] = [e for e in events if isinstance(e, TaskResult)]
    reviews = [e for e in events if isinstance(e, ReviewSubmitted)]
    assert len(reviews) == 4 and parts["execution"] == result.usage
    assert parts["jury"].requests == sum(r.usage.requests for r in reviews) == 6  # one per plan
    lines = text.splitlines()
    assert any(line.split()[:2] == ["jury", "6"] for line in lines)
    executed = ["execution", "1", str(result.usage.total_tokens)]
    assert any(line.split()[:3] == executed for line in lines)
    assert any(line.split()[:1] == ["small:1"] and "-9.85" in line for line in lines)
    assert "outcome: failed, score 0: 0/3" in text


def test_the_audit_of_an_open_auction_says_what_is_missing() -> None:
    events = refined_auction()[:8]  # up to the refinement
    text = audit.render(stored(events))
    assert "round-0 scores as frozen at refinement" in text
    assert "winner: none yet" in text and "outcome: none recorded" in text


# --- the lean auction ---------------------------------------------------------------------------


def lean_auction(small_passes: bool = False) -> list[Event]:
    """A lean auction played by the state machine: small's draft fails (or passes), large is
    called with it (or not); the log as the recorder keeps it, minus the agents' heartbeats."""
    from tests.unit.test_lean_auction import Market, large, small, task

    market = Market(small(draft_passes=small_passes), large())
    market.post(task("t-lean"))
    market.step()
    return market.log


def edit(events: list[Event], kind: type, change: Any, which: Any = lambda e: True) -> list[Event]:
    """The events with those of `kind` (that `which` picks) changed through their JSON."""
    out = []
    for event in events:
        if isinstance(event, kind) and which(event):
            payload = json.loads(event.model_dump_json())
            change(payload)
            event = kind.model_validate_json(json.dumps(payload))
        out.append(event)
    return out


def test_a_lean_auction_verifies_clean_with_and_without_its_evidence() -> None:
    for small_passes in (True, False):
        events = lean_auction(small_passes)
        assert closed_of(events).mechanism == "lean"
        assert replay.verify(events) == []
        assert replay.verify([e for e in events if isinstance(e, AuctionClosed)]) == []


def test_a_changed_estimate_is_named() -> None:
    def lower(payload: dict) -> None:
        payload["lean"]["estimates"][0].update(examples_pass=0.1)  # large's, at the close

    found = replay.verify(edit(lean_auction(), AuctionClosed, lower))
    assert {"lean.estimates[large].examples_pass", "lean.estimates[large].reservation"} <= fields(
        found
    )
    [changed] = [d for d in found if d.field == "lean.estimates[large].examples_pass"]
    assert (changed.recorded, changed.recomputed) == (0.1, 0.8)


def test_a_changed_reservation_in_a_call_is_named_and_so_is_the_call_it_no_longer_explains() -> (
    None
):
    def raise_large(payload: dict) -> None:
        for e in payload["estimates"]:
            if e["agent_id"] == "large":
                e.update(reservation=0.99)

    first = edit(lean_auction(), BidRequested, raise_large, lambda c: c.call == 1)
    found = replay.verify(first)
    assert "calls[1].estimates[large].reservation" in fields(found)
    assert "calls[1].agent_id" in fields(found)  # with 0.99, large would have been asked first
    assert "calls[2].estimates[large].reservation" not in fields(found)


def test_a_changed_draft_verdict_is_named_against_the_draft_bid() -> None:
    def passes(payload: dict) -> None:
        payload.update(examples_pass=True, failure=None)

    events = edit(lean_auction(), BidSubmitted, passes, lambda b: b.agent_id == "small")
    found = replay.verify(events)
    [verdict] = [d for d in found if d.field == "drafts[small].examples_pass"]
    assert (verdict.recorded, verdict.recomputed) == (False, True)


def test_a_changed_verdict_in_the_close_is_named_by_the_chain_and_the_decision() -> None:
    def flip(payload: dict) -> None:
        payload["lean"]["drafts"][0].update(examples_pass=True)  # small's, at the close

    found = replay.verify(edit(lean_auction(), AuctionClosed, flip))
    assert {"lean.drafts", "lean.drafts[small].worth", "drafts[small].examples_pass"} <= fields(
        found
    )


def test_a_changed_lean_winner_is_named() -> None:
    def small_wins(payload: dict) -> None:
        payload["winner_agent_id"] = "small"

    found = replay.verify(edit(lean_auction(), AuctionClosed, small_wins))
    [winner] = [d for d in found if d.field == "winner_agent_id"]
    assert (winner.recorded, winner.recomputed) == ("small", "large")


def test_lean_auctions_are_left_out_of_counterfactuals() -> None:
    summary = replay.counterfactual(refined_auction() + lean_auction(), W)
    assert summary.auctions == 1


def test_the_audit_tells_a_lean_auction_story() -> None:
    events = lean_auction()
    text = audit.render(stored(events))
    for kind in ("AuctionOpened", "BidRequested", "BidSubmitted", "AuctionClosed", "TaskResult"):
        assert kind in text
    assert "lean auction: a right answer is worth 1" in text
    assert "  1. ask small: first" in text
    assert "  2. ask large: large may beat the draft in hand (0.7 > 0); shown small's" in text
    assert "draft: fails the visible examples (AssertionError: small's scripted draft)" in text
    assert "draft: passes the visible examples, worth 0.95" in text
    assert "stopped: no agent left to ask can beat large's draft (0.95)" in text
    assert "winner: large with its draft (awarded)" in text
    lines = text.splitlines()
    assert any(line.split()[:2] == ["small", "0.05"] and "0.88" in line for line in lines)
    open_text = audit.render(stored(events[:4]))
    assert "stopped: not yet" in open_text and "winner: none yet" in open_text


# --- the package's entry point ------------------------------------------------------------------


def test_the_entry_point_exports_what_sale_replay_uses_and_each_module_holds_one_concept() -> None:
    from marketplace.log.replay import NO_LOG, LogUnavailable, read
    from marketplace.log.replay.readers import read as read_from_config

    assert set(replay.__all__) == {
        "NO_LOG",
        "Log",
        "LogUnavailable",
        "counterfactual",
        "read",
        "verify",
    }
    assert read is read_from_config and "no event log" in NO_LOG
    assert issubclass(LogUnavailable, RuntimeError)
    package = Path(replay.__file__).parent
    for module in package.glob("*.py"):
        text = module.read_text()
        assert text.startswith('"""'), f"{module.name}: says what it holds"
        assert len(text.splitlines()) <= 400, module.name
