"""The executor comparison's table, from hand-built trials."""

from __future__ import annotations

import pytest

from agents.coding import Attempt
from marketplace.evaluation.executors import (
    SearchTrial,
    Trial,
    best,
    best_searcher,
    summarize,
    summarize_search,
)
from schemas.events import Price, Usage

PRICE = {"M": Price(input=1.0, output=10.0)}
DRAFT = Usage(requests=1, prompt_tokens=100_000, completion_tokens=10_000, seconds=2.0)
FIX = Usage(requests=1, prompt_tokens=200_000, completion_tokens=10_000, seconds=3.0)


def trial(task: str, draft_ok: bool, draft_passed: bool, fixed: tuple[bool, bool] | None):
    fix = Attempt("fixed", FIX, None if fixed[0] else "still failing") if fixed else None
    return Trial(
        task_id=task,
        agent_id="M",
        style="continue",
        planned=False,
        draft=Attempt("code", DRAFT, None if draft_ok else "assert failed"),
        draft_passed=draft_passed,
        fixed=fix,
        fixed_passed=fixed[1] if fixed else draft_passed,
    )


def test_one_call_and_a_fix_round_are_told_apart():
    trials = [
        trial("t0", True, True, None),  # right at once: no fix made
        trial("t1", True, False, None),  # passes the examples, fails the hidden tests
        trial("t2", False, False, (True, True)),  # the fix repairs it
        trial("t3", False, False, (False, False)),
    ]
    one, two = summarize(trials, PRICE)
    assert (one.rounds, two.rounds) == (1, 2)
    assert one.pass_at_1 == pytest.approx(1 / 4) and two.pass_at_1 == pytest.approx(2 / 4)
    assert one.examples_pass == pytest.approx(2 / 4) and two.examples_pass == pytest.approx(3 / 4)
    assert one.examples_right == pytest.approx(1 / 2) and two.examples_right == pytest.approx(2 / 3)
    # a draft: 0.1 Mtok read at 1 + 0.01 Mtok written at 10 = 0.2; a fix: 0.2 + 0.1 = 0.3
    assert one.cost == pytest.approx(0.2)
    assert two.cost == pytest.approx(0.2 + 2 * 0.3 / 4)
    assert one.seconds == pytest.approx(2.0) and two.seconds == pytest.approx(2.0 + 2 * 3.0 / 4)


def test_the_choice_is_the_most_pass_per_cpu_second():
    trials = [trial("t0", True, True, None), trial("t1", False, False, (True, True))]
    text = best(summarize(trials, PRICE))
    # one call: 50% at 2 CPU-s (0.25/s); with the fix: 100% at 3.5 CPU-s (0.29/s)
    assert text == "- M: continue, 2 call(s): pass@1 100.0% at 3.50 CPU-s a task"


def search_trial(agent: str, style: str, task: str, exact: bool, tokens: int) -> SearchTrial:
    usage = Usage(requests=2, prompt_tokens=tokens, completion_tokens=tokens // 10, seconds=1.0)
    return SearchTrial(task, agent, style, exact, 1.0 if exact else 0.25, True, usage)  # type: ignore[arg-type]


def test_the_searcher_is_chosen_by_exact_matches_per_cost_pooled_over_the_agents():
    prices = {"M": Price(input=1.0, output=1.0), "L": Price(input=2.0, output=2.0)}
    trials = [
        # plain: 2 matches of 4 at 1.1 + 2.2 per task pair; short: 3 of 4 but dearer
        search_trial("M", "plain", "t0", True, 100_000),
        search_trial("M", "plain", "t1", False, 100_000),
        search_trial("L", "plain", "t0", True, 100_000),
        search_trial("L", "plain", "t1", False, 100_000),
        search_trial("M", "short", "t0", True, 400_000),
        search_trial("M", "short", "t1", True, 400_000),
        search_trial("L", "short", "t0", True, 400_000),
        search_trial("L", "short", "t1", False, 400_000),
        search_trial("M", "example", "t0", False, 10_000),  # cheap, but matches nothing
        search_trial("M", "example", "t1", False, 10_000),
    ]
    rows = summarize_search(trials, prices)
    assert [(r.agent_id, r.style) for r in rows][:3] == [
        ("L", "plain"),
        ("L", "short"),
        ("M", "plain"),
    ]
    m_short = next(r for r in rows if (r.agent_id, r.style) == ("M", "short"))
    assert m_short.exact == 1.0 and m_short.f1 == 1.0 and m_short.cost == pytest.approx(0.44)
    chosen, why = best_searcher(rows)
    assert chosen == "plain" and "example" not in why  # 2 / 0.66 beats 3 / 2.64
    assert best_searcher([r for r in rows if r.style == "example"])[0] is None
