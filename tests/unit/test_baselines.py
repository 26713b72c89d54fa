"""The routers and SALE's round 0, replayed over hand-built matrices with known answers.

Agents S, M, L cost 1, 2 and 4 per million tokens (`tests.matrices`). Every draft uses 1 Mtok,
so a router's draft costs exactly its agent's price; every bid uses 0.2 Mtok and every review
0.5 Mtok. Bids carry price 0: a method that forgot to apply the price table would choose
differently. `SPLIT` prices reading and writing apart, and orders the agents differently by
each.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from marketplace.core.measures import Spend, TaskRun, cost, summarize
from marketplace.evaluation import baselines
from marketplace.evaluation.matrix import Matrix
from schemas.events import Price, Weights
from tests.matrices import AGENTS, PRICES, RESULT, SPLIT, build


def without(matrix: Matrix, task: str, agent: str) -> Matrix:
    cells = {k: v for k, v in matrix.cells.items() if k != (task, agent)}
    return dataclasses.replace(matrix, cells=cells)


def draft(agent: str) -> Spend:
    """What a router spends on one agent: its draft (1 Mtok, 2 s), no plan."""
    return Spend(agent, "execution", RESULT)


def executors(runs: list[TaskRun]) -> list[str | None]:
    return [r.executor for r in runs]


def test_always_pays_its_agents_draft_and_no_plan_nor_auction() -> None:
    runs = baselines.always(build({"t1": "SL", "t2": "", "t3": "L"}), "L")
    assert executors(runs) == ["L", "L", "L"]
    assert [r.passed for r in runs] == [True, False, True]
    assert all(r.spend == (draft("L"),) for r in runs)
    result = summarize("always-L", runs, PRICES, "L")
    assert (result.cost, result.auction_cost, result.largest_share) == (12.0, 0.0, 1.0)
    assert result.seconds == 3 * 2.0  # the drafts' compute alone


def test_a_routers_draft_is_priced_per_direction() -> None:
    """A draft reads 0.75 Mtok and writes 0.25 Mtok: each at its own price."""
    runs = baselines.always(build({"t1": "L"}), "M")
    assert cost(runs[0].spend, SPLIT) == pytest.approx(0.75 * 0.25 + 0.25 * 6.0)


def test_always_refuses_an_agent_the_matrix_does_not_have() -> None:
    with pytest.raises(ValueError):
        baselines.always(build({"t1": "S"}), "XL")


WEIGHTS = Weights(cost=0.01, entropy=0.0, jury=1.0)
METHODS: dict[str, Callable[[Matrix], list[TaskRun]]] = {
    "always": lambda m: baselines.always(m, "S"),
    "random": lambda m: baselines.random_choice(m, 3),
    "cascade": lambda m: baselines.cascade(m, PRICES),
    "oracle": lambda m: baselines.oracle(m, PRICES),
    "sale": lambda m: baselines.sale_round0(m, WEIGHTS, PRICES),
}


@pytest.mark.parametrize("method", METHODS)
def test_only_complete_tasks_are_run_in_matrix_order(method: str) -> None:
    matrix = without(build({"t3": "S", "t1": "S", "t2": "S"}), "t1", "M")
    assert [r.task_id for r in METHODS[method](matrix)] == ["t3", "t2"]


@pytest.mark.parametrize("method", METHODS)
def test_routers_run_tasks_without_plans_and_sale_only_tasks_with_them(method: str) -> None:
    matrix = build({"t1": "S", "t2": "S", "t3": "S"}, drafts_only={"t2"})
    expected = ["t1", "t3"] if method == "sale" else ["t1", "t2", "t3"]
    assert [r.task_id for r in METHODS[method](matrix)] == expected


def test_the_auction_is_not_replayed_on_a_task_without_plans() -> None:
    with pytest.raises(ValueError, match="t1: no bid or review from S, M, L"):
        baselines.scored_bids(build({"t1": "S"}, drafts_only={"t1"}), "t1", WEIGHTS, PRICES)


def test_random_choice_is_the_seeded_draw_per_task() -> None:
    matrix = build({f"t{i:02}": "S" for i in range(20)})
    draw = random.Random(11)
    assert executors(baselines.random_choice(matrix, 11)) == [
        draw.choice(AGENTS) for _ in range(20)
    ]
    assert executors(baselines.random_choice(matrix, 12)) != executors(
        baselines.random_choice(matrix, 11)
    )
    run = baselines.random_choice(matrix, 11)[0]
    assert run.spend == (draft(run.executor or ""),)


def test_cascade_escalates_from_cheapest_until_the_visible_examples_pass() -> None:
    matrix = build(
        {"t1": "SML", "t2": "ML", "t3": "", "t4": "L"},
        checks={"t1": "SML", "t2": "ML", "t3": "", "t4": "S"},
    )
    runs = baselines.cascade(matrix, PRICES)
    assert executors(runs) == ["S", "M", "L", "S"]  # t3: the dearest is accepted regardless
    assert [r.passed for r in runs] == [True, True, False, False]  # t4: examples ≠ hidden checks
    assert [[s.agent_id for s in r.spend] for r in runs] == [
        ["S"],
        ["S", "M"],
        ["S", "M", "L"],
        ["S"],
    ]
    assert [cost(r.spend, PRICES) for r in runs] == [1.0, 3.0, 7.0, 1.0]
    assert all(s == draft(s.agent_id) for r in runs for s in r.spend)


def test_cascade_order_is_by_price_not_by_agent_order() -> None:
    matrix = build({"t1": "ML"}, checks={"t1": "SM"})
    prices = {"S": Price(input=2, output=2), "M": Price(input=1, output=1), "L": PRICES["L"]}
    [run] = baselines.cascade(matrix, prices)
    assert run.executor == "M"
    assert run.spend == (draft("M"),)


def test_the_order_is_by_output_price_and_each_try_is_priced_per_direction() -> None:
    """By input price M would come first; by output price (the auction's order) S does."""
    assert baselines.by_price(AGENTS, SPLIT) == ["S", "M", "L"]
    assert baselines.by_price(
        ["b", "a"], {"a": Price(input=9, output=1), "b": Price(input=0, output=1)}
    ) == ["a", "b"]
    [run] = baselines.cascade(build({"t1": "L"}, checks={"t1": "L"}), SPLIT)
    assert [s.agent_id for s in run.spend] == ["S", "M", "L"]
    read, written = 0.75, 0.25  # Mtok of each draft
    assert cost(run.spend, SPLIT) == pytest.approx(
        sum(read * SPLIT[a].input + written * SPLIT[a].output for a in AGENTS)
    )


def test_oracle_picks_the_cheapest_passing_agent_or_the_cheapest_when_none_passes() -> None:
    runs = baselines.oracle(build({"t1": "ML", "t2": "", "t3": "SML"}), PRICES)
    assert executors(runs) == ["M", "S", "S"]
    assert [r.passed for r in runs] == [True, False, True]
    assert [r.spend for r in runs] == [(draft("M"),), (draft("S"),), (draft("S"),)]


def test_foreseen_pays_only_the_draft_it_keeps_and_sends_unchecked_tasks_to_the_dearest() -> None:
    matrix = build(
        {"t1": "ML", "t2": "", "t3": "SML", "t4": "SML"},
        checks={"t1": "ML", "t2": "", "t3": "SML", "t4": "SML"},
    )
    matrix = dataclasses.replace(matrix, unchecked=frozenset({"t4"}))
    runs = baselines.foreseen(matrix, PRICES)
    assert executors(runs) == ["M", "L", "S", "L"]  # t2: none will pass; t4: nothing to check
    assert [r.spend for r in runs] == [(draft("M"),), (draft("L"),), (draft("S"),), (draft("L"),)]
    assert [r.passed for r in runs] == [True, False, True, True]


def unit(x: float, y: float) -> np.ndarray:
    vector = np.array([x, y])
    return vector / np.linalg.norm(vector)


EMBEDDINGS = {
    "a1": unit(1, 0),
    "a2": unit(0.9, 0.1),
    "b1": unit(0, 1),
    "b2": unit(0.1, 0.9),
    "x1": unit(0.95, 0.05),
    "y1": unit(0.02, 1),
}
TRAIN = {"a1": "L", "a2": "L", "b1": "SL", "b2": "SL"}  # L alone near x; S and L near y


def test_knn_chooses_the_cheapest_best_agent_of_the_nearest_train_tasks() -> None:
    test = build({"x1": "S", "y1": "SML"})  # x1's own outcomes would favour S: they are unseen
    runs = baselines.knn(build(TRAIN), test, EMBEDDINGS, PRICES, k=2)
    assert executors(runs) == ["L", "S"]
    assert [r.passed for r in runs] == [False, True]
    assert [r.spend for r in runs] == [(draft("L"),), (draft("S"),)]


def test_knn_with_every_train_task_as_neighbour_follows_the_overall_rate() -> None:
    test = build({"x1": "S", "y1": "SML"})
    runs = baselines.knn(build(TRAIN), test, EMBEDDINGS, PRICES, k=4)
    assert executors(runs) == ["L", "L"]  # L passes 4/4, S 2/4


def test_knn_breaks_equal_similarity_by_task_id() -> None:
    train = build({"c2": "M", "c1": "S"})
    embeddings = {"c1": unit(1, 0), "c2": unit(1, 0), "x1": unit(1, 1)}
    [run] = baselines.knn(train, build({"x1": ""}), embeddings, PRICES, k=1)
    assert run.executor == "S"


def test_knn_refuses_a_test_task_it_was_trained_on() -> None:
    with pytest.raises(ValueError, match="b1"):
        baselines.knn(build(TRAIN), build({"x1": "S", "b1": "S"}), EMBEDDINGS, PRICES)


SALE = {
    # cost terms 0.01·price·100 = 1, 2, 4; values = sum of the three jurors' scores
    "t1": {"S": (1.0, 1.0, 1.0), "M": (4.0, 4.0, 4.0), "L": (4.5, 4.5, 4.5)},
    # M's second juror left it out: it counts as the others' mean (5), not as 0
    "t2": {"S": (1.0, 1.0, 1.0), "M": (5.0, None, 5.0), "L": (4.5, 4.5, 4.5)},
}


def test_sale_round0_scores_with_the_price_table_and_the_whole_jury() -> None:
    matrix = build({"t1": "SL", "t2": "M"}, scores=SALE)
    t1 = baselines.scored_bids(matrix, "t1", WEIGHTS, PRICES)
    assert [b.agent_id for b in t1] == list(AGENTS)
    assert [b.price for b in t1] == [1.0, 2.0, 4.0]
    split = baselines.scored_bids(matrix, "t1", WEIGHTS, SPLIT)
    assert [b.price for b in split] == [2.0, 6.0, 12.0]  # a plan is written: the output price
    assert [b.score for b in t1] == pytest.approx([1 - 3, 2 - 12, 4 - 13.5])
    t2 = baselines.scored_bids(matrix, "t2", WEIGHTS, PRICES)
    assert t2[1].jury == {"S": 5.0, "M": None, "L": 5.0}
    assert t2[1].score == pytest.approx(2 - 15)


def test_sale_round0_awards_the_lowest_cost_minus_value() -> None:
    runs = baselines.sale_round0(build({"t1": "SL", "t2": "M"}, scores=SALE), WEIGHTS, PRICES)
    assert executors(runs) == ["M", "M"]
    assert [r.passed for r in runs] == [False, True]  # the winner's own verdict, not the best


def test_sale_round0_pays_every_bid_and_review_and_the_winners_draft() -> None:
    [run] = baselines.sale_round0(build({"t1": "SL"}, scores=SALE), WEIGHTS, PRICES)
    assert Counter((s.part, s.agent_id) for s in run.spend) == Counter(
        [("bids", a) for a in AGENTS] + [("jury", a) for a in AGENTS] + [("execution", "M")]
    )
    assert [s for s in run.spend if s.part == "execution"] == [draft("M")]
    result = summarize("sale", [run], PRICES, "L")
    assert result.auction_cost == pytest.approx(0.2 * 7 + 0.5 * 7)
    assert result.cost == pytest.approx(4.9 + 1.0 * 2)
    assert result.seconds == pytest.approx(3 * 1.0 + 3 * 0.5 + 2.0)


def test_sale_round0_neither_asks_nor_pays_a_juror_of_weight_zero() -> None:
    matrix = build({"a": "SML"})
    weights = Weights(cost=1.0, entropy=0.0, jury=1.0, jurors={"L": 0.0})
    [run] = baselines.sale_round0(matrix, weights, PRICES)
    assert sorted(s.agent_id for s in run.spend if s.part == "jury") == ["M", "S"]
    scored = baselines.scored_bids(matrix, "a", weights, PRICES)
    assert all(set(b.jury) == {"S", "M"} for b in scored)
    [unjudged] = baselines.sale_round0(matrix, Weights(cost=1.0, entropy=0.0, jury=0.0), PRICES)
    assert [s for s in unjudged.spend if s.part == "jury"] == []
