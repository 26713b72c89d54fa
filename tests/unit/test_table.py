"""The benchmark's table over a hand-built matrix, the live runs' config, and the config writer."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import numpy as np
import pytest

from marketplace.evaluation import baselines, live, table
from marketplace.evaluation.task_sets import from_dataset
from marketplace.shared.config import Config, LeanConfig, PriorConfig, parse_config, to_toml
from schemas.events import Weights
from tests.matrices import PRICES, build


def embeddings(*matrices) -> dict[str, np.ndarray]:
    return baselines.embeddings_for(matrices, lambda texts: np.eye(len(texts)))


def test_every_method_is_compared_with_always_largest_on_the_same_tasks() -> None:
    train = build({"a": "SML", "b": "ML"})
    test = build({"c": "SML", "d": "L", "e": ""})
    methods = table.matrix_methods(train, test, Weights(), PRICES, embeddings(train, test))
    rows = {row.result.method: row for row in table.rows(methods, PRICES, "L")}
    assert rows["always L"].result.pass_at_1 == pytest.approx(2 / 3)
    assert rows["always L"].versus_largest.cost_vs_largest == 1.0
    oracle = rows["oracle"]
    assert oracle.result.executors == {"S": 2, "L": 1}  # c → S, d → L, e (nobody) → S
    assert oracle.versus_largest.cost_vs_largest == pytest.approx((1 + 4 + 1) / 12)
    assert oracle.versus_largest.largest_use_cut == pytest.approx(2 / 3)
    assert rows["random"].pass_spread.n == len(table.RANDOM_SEEDS)
    assert (
        rows["SALE-paper round 0, no jury"].result.auction_share
        < rows["SALE-paper round 0"].result.auction_share
    )  # no jury: nothing spent on one
    reference = rows["always L"].paired
    assert (reference.pass_delta.low, reference.pass_delta.high) == (0.0, 0.0)
    assert reference.cost_ratio.low == pytest.approx(1.0) == reference.cost_ratio.high
    assert oracle.paired.pass_delta.estimate == pytest.approx(0.0)
    assert oracle.paired.cost_ratio.estimate == pytest.approx((1 + 4 + 1) / 12)
    assert oracle.paired.cost_ratio.low <= oracle.paired.cost_ratio.estimate
    markdown = table.markdown(list(rows.values()))
    assert "| oracle | 1 | 66.7% | +0.0 [" in markdown


def test_the_lean_auction_and_its_ablations_run_in_three_orders_and_meet_a_checked_target():
    train = build({"a": "SML", "b": "ML"})
    test = build({"c": "SML", "d": "L", "e": "", "f": "ML"})
    # L's escalation draft after M's failing one: here, L's own draft
    escalations = {(t, "L", "M"): test.cell(t, "L") for t in test.tasks}
    test = replace(test, escalations=escalations)
    hopeless = PriorConfig(examples_pass=0.02, right_if_pass=0.1, right_if_fail=0.01, cost=1.0)
    lean = LeanConfig(
        value=40.0,
        priors={
            "S": hopeless,
            **{
                a: PriorConfig(examples_pass=0.5, right_if_pass=0.9, right_if_fail=0.1, cost=c)
                for a, c in (("M", 2.0), ("L", 4.0))
            },
        },
    )
    vectors = embeddings(train, test)
    methods = table.matrix_methods(train, test, Weights(), PRICES, vectors, lean)
    assert len(methods["SALE-lean"]) == table.ORDERS
    assert len(methods["SALE-lean, no memory value"]) == 1
    rows = table.rows(methods, PRICES, "L")
    text = table.target(rows, "SALE-lean", "L")
    assert (
        text.startswith("Target for SALE-lean")
        and text.count(": met") + text.count(": missed") == 5
    )
    # foresight: c → S, d → L, e (none will pass) → L, f → M: 11/16 of always-L, within 0.75
    assert "- bound: with foresight of the checks, 0.688 × always-largest" in text
    assert "the cost target is within reach of any method" in text
    lean_row = next(r for r in rows if r.result.method == "SALE-lean")
    assert lean_row.result.tasks == 4


def test_without_bids_and_reviews_the_routers_are_compared_and_sale_is_left_out() -> None:
    train = build({"a": "SML"}, drafts_only={"a"})
    test = build({"c": "SML", "d": "L"}, drafts_only={"c", "d"})
    methods = table.matrix_methods(train, test, Weights(), PRICES, embeddings(train, test))
    assert not [name for name in methods if "SALE" in name]
    rows = table.rows(methods, PRICES, "L")
    assert {row.result.tasks for row in rows} == {2}


def test_a_live_run_has_its_own_database_cached_agents_and_its_variant() -> None:
    config = parse_config(
        {
            "agents": [
                {
                    "id": "S",
                    "backend": "scripted",
                    "model": "s",
                    "input_price": 1.0,
                    "output_price": 1.0,
                },
            ]
        },
        env={},
    )
    run = live.live_config(config, "no-memory", "postgresql://h/run", "postgresql://h/cache")
    assert run.database.url == "postgresql://h/run"
    assert run.auction.memory_k == 0 and run.auction.bid_window_s == live.WINDOW_S
    assert all(a.cache and a.cache_url == "postgresql://h/cache" for a in run.agents)
    assert "monitor" not in run.stack.services
    assert run.auction.mechanism == "paper"
    assert live.live_config(config, "lean", "u", "u").auction.mechanism == "lean"
    with pytest.raises(ValueError, match="unknown variant"):
        live.live_config(config, "no-jury", "u", "u")


def test_task_orders_are_the_dataset_order_then_seeded_shuffles() -> None:
    postings = from_dataset("humaneval", 0, 6)
    ids = [p.task.task_id for p in postings]
    assert [p.task.task_id for p in live.ordered(postings, 0)] == ids
    once, again = live.ordered(postings, 1), live.ordered(postings, 1)
    assert [p.task.task_id for p in once] == [p.task.task_id for p in again] != ids
    assert sorted(p.task.task_id for p in once) == sorted(ids)


def test_a_written_config_reads_back_equal() -> None:
    config = Config.model_validate(
        {
            "auction": {"memory_k": 3, "weights": {"cost": -0.5, "jurors": {"S": 2.0}}},
            "agents": [
                {
                    "id": "S",
                    "backend": "scripted",
                    "model": "s",
                    "input_price": 0.5,
                    "output_price": 1.5,
                    "cached_input_price": 0.1,
                },
                {
                    "id": "L",
                    "backend": "scripted",
                    "model": "l",
                    "input_price": 1.0,
                    "output_price": 4.0,
                },
            ],
            "stack": {"services": ["recorder"]},
        }
    )
    assert parse_config(tomllib.loads(to_toml(config)), env={}) == config


def test_a_live_run_is_checked_against_its_replay_task_by_task() -> None:
    test = build({"c": "SML", "d": "L"})
    always_l, oracle = baselines.always(test, "L"), baselines.oracle(test, PRICES)
    assert table.agreement(always_l, always_l, PRICES).startswith(
        "2 tasks: the same winner on 2, the same verdict on 2"
    )
    text = table.agreement(oracle, always_l, PRICES)
    assert text.startswith("2 tasks: the same winner on 1, the same verdict on 2")
    always_m = baselines.always(test, "M")  # c: both pass; d: only L
    assert table.diagnosis(always_m, always_l) == (
        "Tasks always-largest passes and it fails: 1 (agents asked: M 1); "
        "tasks it passes and always-largest fails: 0 (agents asked: )."
    )


def test_the_mean_score_is_over_tasks_of_the_mean_over_repetitions() -> None:
    from marketplace.core.measures import TaskRun

    reps = [
        [TaskRun("a", "S", True, (), 1.0), TaskRun("b", "S", False, (), 0.0)],
        [TaskRun("a", "L", False, (), 0.5), TaskRun("b", "L", False, (), 0.5)],
    ]
    assert table.mean_score(reps, ["a", "b"]) == pytest.approx((0.75 + 0.25) / 2)
    assert table.mean_score([[TaskRun("a", "S", True, ())]], ["a"]) is None  # a run unscored


def test_a_scored_table_shows_the_mean_f1_and_a_plain_one_does_not() -> None:
    test = build({"c": "SML", "d": "L"})
    train = build({"a": "SML"})
    methods = table.matrix_methods(train, test, Weights(), PRICES, embeddings(train, test))
    rows = table.rows(methods, PRICES, "L")
    plain, scored = table.markdown(rows), table.markdown(rows, scored=True)
    assert "mean F1" not in plain and "| method | runs | pass@1 | Δ pass@1" in plain
    assert "| method | runs | pass@1 | mean F1 | Δ pass@1" in scored
    assert "| always L | 1 | 100.0% | 1.000 | +0.0 [" in scored  # F1 = the score of each draft
    width = {len(line.split("|")) for line in scored.splitlines()}
    assert width == {len(plain.splitlines()[0].split("|")) + 1}
