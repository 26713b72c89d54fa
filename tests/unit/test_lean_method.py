"""SALE-lean replayed over hand-built matrices whose answers are worked out by hand.

Agents M and L cost 1 and 4 per million tokens (both directions), every draft is 1 Mtok, so a
draft costs exactly its agent's price. With the priors below and a right answer worth 10:
  r_M = 9 − 1/0.6 = 7.33 (asked first), r_L = 9.5 − 4/0.7 = 3.79;
  a passing M draft is worth 9 > r_L: stop, M wins; a failing one is worth 0.5 < r_L: ask L.
"""

from __future__ import annotations

from uuid import UUID

import numpy as np
import pytest

from marketplace.core import lean_policy
from marketplace.core.measures import cost
from marketplace.evaluation import lean_replay
from marketplace.evaluation.matrix import Cell, Draft, Matrix
from schemas.events import Price, TaskOutcome, TaskResult, Usage

AGENTS = ("M", "L")
PRICES = {"M": Price(input=1.0, output=1.0), "L": Price(input=4.0, output=4.0)}
MTOK = Usage(requests=1, prompt_tokens=500_000, completion_tokens=500_000, seconds=1.0)
PRIORS = {
    "M": lean_policy.Prior(examples_pass=0.6, right_if_pass=0.9, right_if_fail=0.05, cost=1.0),
    "L": lean_policy.Prior(examples_pass=0.7, right_if_pass=0.95, right_if_fail=0.1, cost=4.0),
}
SETTINGS = lean_policy.Settings(value=10.0, neighbours=10, strength=4.0, feedback=True)


def draft(task: str, agent: str, checked: bool, passed: bool, output: str = "code") -> Draft:
    result = TaskResult(
        producer=agent,
        task_id=task,
        agent_id=agent,
        bid_id=UUID(int=0),
        output=output,
        usage=MTOK,
        error=None if checked else "assert failed",
    )
    outcome = TaskOutcome(producer="verifier", task_id=task, passed=passed, score=float(passed))
    return Draft(result, outcome)


def matrix(rows: dict[str, dict[str, tuple[bool, bool]]], escalations=None) -> Matrix:
    """rows[task][agent] = (passes the examples, passes the hidden checks)."""
    cells = {
        (t, a): Cell(**vars(draft(t, a, *verdicts)))
        for t, by_agent in rows.items()
        for a, verdicts in by_agent.items()
    }
    escalated = {
        (t, a, after): draft(t, a, *verdicts, output="fixed")
        for (t, a, after), verdicts in (escalations or {}).items()
    }
    return Matrix(tuple(rows), AGENTS, cells, dict.fromkeys(rows, "p"), escalated)


EMBEDDINGS = {f"t{i}": np.array([1.0, 0.0]) for i in range(10)}


def runs(m: Matrix, variant: lean_replay.Variant = "no memory"):
    return lean_replay.lean_runs(m, m.tasks, PRIORS, SETTINGS, PRICES, EMBEDDINGS, variant)


def test_a_passing_cheap_draft_wins_and_nobody_else_is_asked():
    [run] = runs(matrix({"t0": {"M": (True, True), "L": (True, True)}}))
    assert run.executor == "M" and run.passed
    assert [(s.agent_id, s.part) for s in run.spend] == [("M", "execution")]
    assert cost(run.spend, PRICES) == pytest.approx(1.0)


def test_a_failing_cheap_draft_escalates_with_its_failure_to_the_dear_agent():
    m = matrix(
        {"t0": {"M": (False, False), "L": (False, False)}},
        escalations={("t0", "L", "M"): (True, True)},
    )
    [run] = runs(m)
    assert run.executor == "L" and run.passed  # the escalation draft, not L's fresh one
    assert [(s.agent_id, s.part) for s in run.spend] == [("M", "bids"), ("L", "execution")]
    assert cost(run.spend, PRICES) == pytest.approx(5.0)


def test_without_feedback_the_dear_agent_drafts_afresh():
    m = matrix({"t0": {"M": (False, False), "L": (False, False)}})  # no escalation computed
    fresh = lean_policy.Settings(value=10.0, neighbours=10, strength=4.0, feedback=False)
    [run] = lean_replay.lean_runs(m, m.tasks, PRIORS, fresh, PRICES, EMBEDDINGS, "no memory")
    assert run.executor == "L" and not run.passed


def test_a_missing_escalation_is_named_not_guessed():
    with pytest.raises(lean_replay.Missing, match="t0: no escalation of L after M"):
        runs(matrix({"t0": {"M": (False, False), "L": (True, True)}}))


def test_all_at_once_pays_every_draft_and_takes_the_best():
    [run] = runs(matrix({"t0": {"M": (True, False), "L": (True, True)}}), "all at once")
    assert run.executor == "L"  # worth 9.5 > 9
    assert sorted((s.agent_id, s.part) for s in run.spend) == [("L", "execution"), ("M", "bids")]


def test_no_evidence_takes_the_best_expected_worth_less_cost():
    # M: 10·(0.6·0.9 + 0.4·0.05) − 1 = 4.6; L: 10·(0.7·0.95 + 0.3·0.1) − 4 = 2.95
    [run] = runs(matrix({"t0": {"M": (False, False), "L": (True, True)}}), "no evidence")
    assert run.executor == "M" and not run.passed


def test_the_memory_learns_that_a_cheap_check_misleads():
    # M's drafts pass their examples but are wrong: once the memory holds enough of them, M's
    # passing draft is worth less than L's reservation value and L is asked as well.
    rows = {f"t{i}": {"M": (True, False), "L": (True, True)} for i in range(8)}
    executors = [r.executor for r in runs(matrix(rows), "full")]
    assert executors[0] == "M"
    assert executors[-1] == "L"
    # Without memory the same misleading check wins every time.
    assert {r.executor for r in runs(matrix(rows))} == {"M"}


def test_priors_are_the_training_rates_smoothed():
    m = matrix(
        {
            "t0": {"M": (True, True), "L": (True, True)},
            "t1": {"M": (True, False), "L": (True, True)},
            "t2": {"M": (False, False), "L": (True, True)},
            "t3": {"M": (False, False), "L": (False, True)},
        }
    )
    prior = lean_replay.fit_priors(m, PRICES)["M"]
    assert prior.examples_pass == pytest.approx(3 / 6)
    assert prior.right_if_pass == pytest.approx(2 / 4)
    assert prior.right_if_fail == pytest.approx(1 / 4)
    assert prior.cost == pytest.approx(1.0)


def test_orders_start_with_the_dataset_order_and_are_fixed():
    tasks = [f"t{i}" for i in range(6)]
    first, second = lean_replay.orders(tasks, 3), lean_replay.orders(tasks, 3)
    assert first[0] == tasks and first == second
    assert sorted(first[1]) == tasks and first[1] != tasks


def test_capture_measures_the_share_of_the_oracles_gain():
    # always-L passes 1 of 2 at cost 8; the oracle passes 2 of 2 at cost 2 (saves 75%).
    m = matrix(
        {
            "t0": {"M": (True, True), "L": (True, True)},
            "t1": {"M": (True, True), "L": (False, False)},
        }
    )
    from marketplace.evaluation import baselines

    largest, oracle = baselines.always(m, "L"), baselines.oracle(m, PRICES)
    pass_gain, cost_gain = lean_replay.capture(oracle, largest, oracle, PRICES)
    assert (pass_gain, cost_gain) == (pytest.approx(1.0), pytest.approx(1.0))
    pass_gain, cost_gain = lean_replay.capture(largest, largest, oracle, PRICES)
    assert (pass_gain, cost_gain) == (pytest.approx(0.0), pytest.approx(0.0))


def test_the_lean_block_replaces_only_itself_in_a_weights_file():
    table = lean_replay.LeanConfig(
        value=3.0, priors={"M": lean_replay.PriorConfig(**vars(PRIORS["M"]))}
    )
    first = lean_replay.with_lean(
        "[auction.weights]\ncost = 1.0\n", lean_replay.lean_toml(table, "sale lean fit x")
    )
    again = lean_replay.with_lean(first, lean_replay.lean_toml(table, "sale lean fit y"))
    assert again.startswith("[auction.weights]\ncost = 1.0\n\n# sale lean fit y\n[auction.lean]")
    assert again.count("[auction.lean]") == 1
