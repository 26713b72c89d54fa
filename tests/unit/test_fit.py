"""The weight fit: winners from normalised terms, the utility, and that the search finds the
routing that the training outcomes reward."""

from __future__ import annotations

import numpy as np

from marketplace.core import scoring
from marketplace.evaluation import fit
from schemas.events import BidSubmitted
from tests.matrices import AGENTS, SPLIT, build


def data(passed: list[list[bool]], jury: list[list[float]], review_cost: float = 0.0) -> fit.Terms:
    """Two agents (cheap first, dear second) on len(passed) tasks; every juror gives the same
    score to a bid (the `jury` value), so juror terms are easy to reason about. Plans are free;
    each review costs `review_cost`."""
    tasks = len(passed)
    cost = np.tile([100.0, 400.0], (tasks, 1))
    scores = np.array(jury, dtype=float)
    return fit.Terms(
        agents=("small", "large"),
        cost=cost,
        entropy=np.full((tasks, 2), 0.5),
        jury=np.repeat(scores[..., None], 2, axis=2),
        passed=np.array(passed, dtype=bool),
        execution_cost=np.tile([1.0, 4.0], (tasks, 1)),
        plan_cost=np.zeros((tasks, 2)),
        review_cost=np.full((tasks, 2), review_cost),
    )


def test_terms_price_every_call_per_direction_on_the_tasks_with_plans() -> None:
    """Drafts read 0.75 Mtok and write 0.25; bids 0.15 and 0.05; reviews 0.4 and 0.1."""
    data = fit.terms(build({"t1": "SL", "t2": "L"}, drafts_only={"t2"}), SPLIT)
    assert data.passed.tolist() == [[True, False, True]]  # t2 has no bids: nothing to fit

    def priced(read: float, written: float) -> list[list[float]]:
        return [[read * SPLIT[a].input + written * SPLIT[a].output for a in AGENTS]]

    np.testing.assert_allclose(data.execution_cost, priced(0.75, 0.25))
    np.testing.assert_allclose(data.plan_cost, priced(0.15, 0.05))
    np.testing.assert_allclose(data.review_cost, priced(0.4, 0.1))
    # The score's cost term, as the auctioneer computes it: output price · plan tokens.
    np.testing.assert_allclose(data.cost, [[2.0 * 100, 6.0 * 100, 12.0 * 100]])


def test_fit_orders_the_agents_by_output_price() -> None:
    weights, _ = fit.fit(build({"t1": "SL", "t2": "L"}), SPLIT, seed=0)
    assert list(weights.jurors) == ["S", "M", "L"]  # by input price M would come first


def test_cost_weight_alone_picks_the_cheaper_agent() -> None:
    terms = data([[True, True]] * 3, [[3, 3]] * 3)
    x, _ = fit.features(terms)
    chosen = fit.winners(x, np.array([[1.0, 0.0, 0.0, 0.0]]))
    assert chosen.tolist() == [[0, 0, 0]]


def test_utility_charges_cost_relative_to_the_largest() -> None:
    terms = data([[False, True], [True, True]], [[0, 0], [0, 0]])
    always_small = np.array([[0, 0]])
    always_large = np.array([[1, 1]])
    nobody = np.array([False, False])
    assert fit.utility(terms, always_small, 0.1, nobody)[0] == 0.5 - 0.1 * 2 / 8
    assert fit.utility(terms, always_large, 0.1, nobody)[0] == 1.0 - 0.1


def test_search_learns_to_trust_the_jury_when_it_predicts_passing() -> None:
    # The small agent passes exactly where the jury rates its plan above the large one's.
    passed = [[True, True], [False, True]] * 10
    jury = [[4, 2], [1, 3]] * 10
    _, score = fit.search(data(passed, jury), lam=0.1, samples=2000, seed=1)
    # The ideal: small on the even tasks, large on the odd ones: all pass, cost (10+40)/80.
    assert score == 1.0 - 0.1 * 50 / 80


def test_asked_jurors_are_paid_for() -> None:
    terms = data([[True, True]], [[0, 0]], review_cost=1.0)
    both = np.array([True, True])
    assert fit.utility(terms, np.array([[1]]), 0.1, both)[0] == 1.0 - 0.1 * (4 + 2) / 4


def test_a_jury_that_predicts_nothing_is_dropped_when_it_costs() -> None:
    # The small agent always passes; the jury's scores carry no information and cost.
    passed = [[True, True]] * 10
    jury = [[2, 3], [3, 2]] * 5
    normalised, score = fit.search(data(passed, jury, review_cost=0.5), samples=2000, seed=3)
    assert list(normalised[2:]) == [0.0, 0.0]  # no juror asked
    assert score == 1.0 - 0.1 * 10 / 40  # always the small agent, no review paid


def test_raw_weights_decide_like_the_normalised_ones() -> None:
    terms = data([[True, False], [False, True]], [[4, 1], [1, 4]])
    normalised = np.array([0.2, 0.1, 0.7, 0.3])
    _, scale = fit.features(terms)
    weights = fit.to_weights(normalised, scale, terms.agents)
    x, _ = fit.features(terms)
    expected = fit.winners(x, normalised[None, :])[0]
    for t in range(2):
        scored = [
            scoring.score_bid(
                BidSubmitted(
                    producer=agent,
                    task_id=f"t{t}",
                    agent_id=agent,
                    model="m",
                    plan="p",
                    plan_tokens=int(terms.cost[t, a] / price),
                    entropy=float(terms.entropy[t, a]),
                    price=price,
                ),
                {j: float(terms.jury[t, a, k]) for k, j in enumerate(terms.agents)},
                weights,
            )
            for a, (agent, price) in enumerate(zip(terms.agents, (1.0, 4.0), strict=True))
        ]
        winner = scoring.best(scored, 0)
        assert winner is not None and winner.agent_id == terms.agents[expected[t]]


def test_weights_file_round_trips(tmp_path) -> None:
    from marketplace.shared.config import load_weights

    weights = fit.to_weights(np.array([0.5, -0.2, 0.3, 0.1]), np.ones(4), ("S", "L"))
    path = tmp_path / "weights.toml"
    path.write_text(fit.weights_toml(weights, "fitted in a test"))
    assert load_weights(path) == weights
