"""The scoring mechanism: formula, tie rule, missing jurors, budget, refinement rule."""

from __future__ import annotations

import random
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.core import scoring
from schemas.events import BidSubmitted, ScoredBid, Weights


def bid(
    agent: str,
    price: float,
    tokens: int,
    entropy: float = 1.0,
    round_: int = 0,
    bid_id: UUID | None = None,
) -> BidSubmitted:
    return BidSubmitted(
        producer=agent,
        task_id="t",
        agent_id=agent,
        model="m",
        plan="p",
        plan_tokens=tokens,
        entropy=entropy,
        price=price,
        round=round_,
        bid_id=bid_id or uuid4(),
    )


def test_score_is_cost_minus_value_with_every_term_recorded() -> None:
    weights = Weights(cost=0.1, entropy=2.0, jury=1.0, jurors={"big": 3.0})
    scored = scoring.score_bid(
        bid("a", price=0.5, tokens=100, entropy=0.25), {"a": 2.0, "big": 4.0}, weights
    )
    assert scored.cost == pytest.approx(0.1 * 0.5 * 100)
    assert scored.value == pytest.approx(2.0 * 0.25 + 1.0 * 2.0 + 3.0 * 4.0)
    assert scored.score == pytest.approx(scored.cost - scored.value)
    assert scored.jury == {"a": 2.0, "big": 4.0}


def test_a_missing_juror_counts_with_the_mean_of_the_others() -> None:
    weights = Weights(cost=0, entropy=0)
    with_gap = scoring.score_bid(bid("a", 1, 1), {"x": 2.0, "y": None, "z": 4.0}, weights)
    assert with_gap.value == pytest.approx(2.0 + 3.0 + 4.0)
    nobody = scoring.score_bid(bid("a", 1, 1), {"x": None, "y": None}, weights)
    assert nobody.value == 0.0


def test_ties_go_to_the_cheaper_agent_then_fewer_tokens_then_agent_id() -> None:
    weights = Weights(cost=0, entropy=0, jury=0)  # every score is 0: only the tie rule decides
    bids = [
        scoring.score_bid(bid(a, p, n), {}, weights)
        for a, p, n in [("b", 0.2, 10), ("c", 0.1, 20), ("a", 0.1, 20), ("d", 0.1, 15)]
    ]
    assert scoring.best(bids, round_=0).agent_id == "d"
    assert scoring.best([b for b in bids if b.agent_id != "d"], round_=0).agent_id == "a"


def test_bids_over_budget_are_ineligible_with_the_reason() -> None:
    weights = Weights()
    cheap = scoring.score_bid(bid("small", 1.0, 100), {}, weights, budget=0.001)
    dear = scoring.score_bid(bid("large", 100.0, 100), {}, weights, budget=0.001)
    assert cheap.eligible and not dear.eligible
    assert "budget" in dear.ineligible_reason
    assert scoring.decide([dear]).reason == "no_eligible_bids"
    assert scoring.decide([cheap, dear]).winner == cheap


def test_only_strictly_cheaper_agents_refine() -> None:
    weights = Weights(cost=0, entropy=0)
    scored = [
        scoring.score_bid(bid(a, p, 10), {"j": s}, weights)
        for a, p, s in [("small", 0.05, 1), ("mid", 0.09, 2), ("peer", 0.16, 1), ("large", 0.16, 5)]
    ]
    provisional = scoring.best(scored, round_=0)
    assert provisional.agent_id == "large"
    assert scoring.refiners(provisional, scored) == ["mid", "small"]


def test_a_refined_bid_wins_only_when_strictly_better() -> None:
    weights = Weights(cost=0, entropy=0)
    large = scoring.score_bid(bid("large", 0.36, 10), {"j": 4.0}, weights)
    equal = scoring.score_bid(bid("small", 0.05, 10, round_=1), {"j": 4.0}, weights)
    better = scoring.score_bid(bid("small", 0.05, 10, round_=1), {"j": 4.5}, weights)
    assert scoring.decide([large, equal]) == scoring.Decision(large, "awarded")
    assert scoring.decide([large, better]) == scoring.Decision(better, "refined")
    assert scoring.decide([]) == scoring.Decision(None, "no_bids")


def test_rescoring_with_the_recorded_weights_reproduces_the_terms_exactly() -> None:
    weights = Weights(cost=0.3, entropy=-0.7, jury=0.4, jurors={"b": 1.3})
    scored = scoring.score_bid(bid("a", 0.09, 173, entropy=0.61), {"a": 3.7, "b": None}, weights)
    assert scoring.rescore(scored, weights) == scored
    other = scoring.rescore(scored, Weights(cost=1, entropy=0, jury=0))
    assert other.score == pytest.approx(0.09 * 173)


agents = st.sampled_from(["a", "b", "c", "d", "e"])
scored_bids = st.builds(
    lambda agent, price, tokens, entropy, s1, s2, round_: scoring.score_bid(
        bid(agent, price, tokens, entropy, round_),
        {"j1": s1, "j2": s2},
        Weights(cost=0.01, entropy=0.5),
    ),
    agents,
    st.sampled_from([0.05, 0.09, 0.16, 0.36]),
    st.integers(1, 400),
    st.floats(0, 3),
    st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5, 5.0])),
    st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5, 5.0])),
    st.sampled_from([0, 1]),
)


@given(st.lists(scored_bids, max_size=10), st.randoms())
def test_the_decision_does_not_depend_on_the_order_of_bids(
    bids: list[ScoredBid], rng: random.Random
) -> None:
    shuffled = list(bids)
    rng.shuffle(shuffled)
    assert scoring.decide(bids) == scoring.decide(shuffled)


@given(st.lists(scored_bids, min_size=1, max_size=10))
def test_the_winner_is_never_beaten_by_an_eligible_bid_of_its_kind(bids: list[ScoredBid]) -> None:
    decision = scoring.decide(bids)
    round0 = [b for b in bids if b.round == 0 and b.eligible]
    if not round0:
        assert decision.winner is None
        return
    provisional = min(round0, key=scoring.rank)
    assert all(decision.winner.score <= b.score for b in round0)
    if decision.reason == "refined":
        assert decision.winner.round == 1 and decision.winner.score < provisional.score
    else:
        assert decision.winner == provisional
