"""The benchmark's measures on hand-made runs whose numbers are known by heart.

Prices are 1, 2 and 4 per million tokens, read or written, and spends are whole millions, so
every cost below is a sum of small integers; one price table prices the directions apart.
"""

from __future__ import annotations

import math

import pytest

from marketplace.core.measures import (
    MethodResult,
    Part,
    Spend,
    Spread,
    TaskRun,
    compare,
    cost,
    mean_result,
    share_over_time,
    spread,
    summarize,
)
from schemas.events import Price, Usage

PRICES = {
    "S": Price(input=1, output=1),
    "M": Price(input=2, output=2),
    "L": Price(input=4, output=4),
}
MTOK = 1_000_000


def run(task: str, executor: str | None, passed: bool, *spend: Spend) -> TaskRun:
    return TaskRun(task, executor, passed, tuple(spend))


def used(mtok: float, seconds: float = 1.0) -> Usage:
    """`mtok` million tokens, all of them prompt (read) tokens."""
    return Usage(requests=1, prompt_tokens=int(mtok * MTOK), seconds=seconds)


def spending(agent: str, part: Part, mtok: float = 1, seconds: float = 1.0) -> Spend:
    return Spend(agent, part, used(mtok, seconds))


def execution(agent: str, mtok: float = 1, seconds: float = 1.0) -> Spend:
    return spending(agent, "execution", mtok, seconds)


def test_cost_prices_each_agents_tokens_at_its_own_price() -> None:
    spent = [execution("S", 3), execution("L", 0.5), spending("M", "jury", 0.25, 0.0)]
    assert cost(spent, PRICES) == pytest.approx(3 * 1 + 0.5 * 4 + 0.25 * 2)


def test_cost_prices_each_direction_at_its_own_price() -> None:
    """Read at the input price, held at the cached input price, written at the output price."""
    prices = {
        "S": Price(input=1, output=3, cached_input=0.5),
        "L": Price(input=4, output=16),  # no cached price: held tokens at the input price
    }
    mixed = Usage(prompt_tokens=3 * MTOK, cached_tokens=2 * MTOK, completion_tokens=MTOK)
    spent = [Spend("S", "execution", mixed), Spend("L", "bids", mixed)]
    assert cost(spent, prices) == pytest.approx((1 * 1 + 2 * 0.5 + 1 * 3) + (3 * 4 + 1 * 16))


def test_a_spend_reads_its_tokens_and_seconds_from_its_usage() -> None:
    spent = Spend("S", "jury", Usage(prompt_tokens=7, completion_tokens=3, seconds=1.5))
    assert (spent.tokens, spent.seconds) == (10, 1.5)


def test_cost_of_an_unpriced_agent_is_an_error_not_free() -> None:
    with pytest.raises(KeyError):
        cost([execution("XL")], PRICES)


def sale_like() -> list[TaskRun]:
    """Four tasks, an auction on each (bids 1 Mtok per agent, a jury of M), two won by L."""
    auction = (spending("S", "bids", 1, 0.5), spending("L", "bids", 1, 0.5))
    jury = spending("M", "jury", 1, 1.0)
    return [
        run("t1", "L", True, *auction, jury, execution("L")),
        run("t2", "S", True, *auction, jury, execution("S")),
        run("t3", "L", False, *auction, jury, execution("L")),
        run("t4", None, True, *auction, spending("S", "refinement", 1, 0.5)),
    ]


def test_summarize_counts_passes_costs_and_auction_share() -> None:
    result = summarize("sale", sale_like(), PRICES, largest="L")
    auction = 4 * (1 + 4) + 3 * 2 + 1  # bids on every task, three juries, one refinement
    assert result.tasks == 4
    assert result.passed == 2  # t4 "passed" with nobody executing: a failure
    assert result.pass_at_1 == 0.5
    assert result.auction_cost == pytest.approx(auction)
    assert result.cost == pytest.approx(auction + 4 + 1 + 4)
    assert result.auction_share == pytest.approx(auction / (auction + 9))
    assert result.seconds == pytest.approx(4 * 1.0 + 3 * 1.0 + 3 * 1.0 + 0.5)
    assert result.largest_share == 0.5
    assert result.executors == {"L": 2, "S": 1, "none": 1}


def test_summarize_of_nothing_is_all_zero_not_a_division_error() -> None:
    result = summarize("empty", [], PRICES, largest="L")
    assert result.tasks == result.passed == 0
    assert result.pass_at_1 == result.cost == result.auction_share == result.largest_share == 0
    assert result.executors == {}


def test_compare_against_always_largest() -> None:
    reference = summarize(
        "always-L", [run(t, "L", True, execution("L")) for t in "abcd"], PRICES, "L"
    )
    method = summarize(
        "router",
        [
            run("a", "S", True, execution("S")),
            run("b", "S", False, execution("S")),
            run("c", "M", True, execution("M")),
            run("d", "L", True, execution("L")),
        ],
        PRICES,
        "L",
    )
    comparison = compare(method, reference)
    assert comparison.result is method
    assert comparison.cost_vs_largest == pytest.approx((1 + 1 + 2 + 4) / 16)
    assert comparison.largest_use_cut == pytest.approx(0.75)
    assert comparison.pass_delta == pytest.approx(-0.25)


def test_compare_with_a_reference_that_never_used_the_largest_cuts_nothing() -> None:
    reference = summarize("free", [run("a", "S", True)], PRICES, "L")
    comparison = compare(
        summarize("m", [run("a", "L", True, execution("L"))], PRICES, "L"), reference
    )
    assert comparison.largest_use_cut == 0.0
    assert math.isnan(comparison.cost_vs_largest)


def test_spread_is_mean_and_range() -> None:
    assert spread([0.5, 0.25, 0.75, 1.0]) == Spread(mean=0.625, low=0.25, high=1.0, n=4)
    with pytest.raises(ValueError):
        spread([])


def result(passed: int, cost_: float, auction: float, executors: dict[str, int]) -> MethodResult:
    return MethodResult(
        method="x",
        tasks=4,
        passed=passed,
        pass_at_1=passed / 4,
        cost=cost_,
        seconds=cost_ * 10,
        auction_cost=auction,
        auction_share=auction / cost_,
        largest_share=executors.get("L", 0) / 4,
        executors=executors,
    )


def test_mean_result_averages_rates_and_money_over_orders() -> None:
    mean = mean_result("sale", [result(2, 4.0, 1.0, {"L": 4}), result(3, 8.0, 5.0, {"S": 4})])
    assert mean.method == "sale"
    assert mean.tasks == 4
    assert mean.pass_at_1 == pytest.approx(0.625)
    assert mean.passed == round(2.5)
    assert mean.cost == pytest.approx(6.0)
    assert mean.seconds == pytest.approx(60.0)
    assert mean.auction_cost == pytest.approx(3.0)
    assert mean.auction_share == pytest.approx(0.5)  # mean auction / mean cost, not mean ratio
    assert mean.largest_share == pytest.approx(0.5)
    assert mean.executors == {"L": 2, "S": 2}


def test_mean_result_refuses_nothing_and_different_task_sets() -> None:
    with pytest.raises(ValueError):
        mean_result("x", [])
    other = MethodResult("x", 5, 0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, {})
    with pytest.raises(ValueError):
        mean_result("x", [result(2, 4.0, 1.0, {}), other])


def test_share_over_time_windows_in_run_order() -> None:
    executors = ["L", "L", "M", "S", "S", "S", None, "L"]
    runs = [run(f"t{i}", e, True) for i, e in enumerate(executors)]
    shares = share_over_time(runs, ["S", "M", "L"], window=3)
    assert shares == [
        {"S": 0.0, "M": 1 / 3, "L": 2 / 3},
        {"S": 1.0, "M": 0.0, "L": 0.0},
        {"S": 0.0, "M": 0.0, "L": 0.5},  # a short last window; nobody executed t6
    ]


def test_share_over_time_needs_a_positive_window() -> None:
    with pytest.raises(ValueError):
        share_over_time([], ["S"], window=0)
