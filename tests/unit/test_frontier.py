"""`sale bench frontier` on hand-built matrices whose figures are worked out by hand.

Every draft is 1 Mtok, so at M 1 and L 4 (test_lean_method's prices) M's draft costs 1 and
L's 4: this pool's ratio r is 0.25. On the test split below M's draft passes its examples on
one task of five; SALE-lean asks M first everywhere and L after each failing draft, so it pays
5 · 4r + 4 · 4 against always-L's 5 · 4: a cost ratio of r + 0.8, below 1 once r < 0.2."""

from __future__ import annotations

import math

import pytest

from marketplace.evaluation import frontier, frontier_page
from marketplace.shared.config import ConfigError, LeanConfig, PriorConfig
from schemas.events import Price
from tests.unit.test_lean_method import EMBEDDINGS, PRICES, matrix

TRAIN = matrix(
    {
        "t0": {"M": (True, True), "L": (True, True)},
        "t1": {"M": (True, True), "L": (True, True)},
        "t2": {"M": (False, False), "L": (True, True)},
    }
)
TEST = matrix(
    {
        "t3": {"M": (True, True), "L": (True, True)},
        **{f"t{i}": {"M": (False, False), "L": (True, True)} for i in range(4, 8)},
    }
)
COSTS = {"M": 1.0, "L": 4.0}  # as refitted at factor 1: the worth of a right answer stays 10
PRIOR = {"examples_pass": 0.6, "right_if_pass": 0.9, "right_if_fail": 0.05}
LEAN = LeanConfig(  # no neighbours read: the priors alone decide, whatever the order
    value=10.0, neighbours=0, priors={a: PriorConfig(**PRIOR, cost=c) for a, c in COSTS.items()}
)


def test_scaling_moves_every_price_but_the_largest_s():
    prices = {"M": Price(input=1.0, output=2.0, cached_input=0.5), "L": Price(input=4, output=8)}
    scaled = frontier.scaled(prices, "L", 0.1)
    assert scaled["L"] == prices["L"]
    assert scaled["M"] == Price(input=0.1, output=0.2, cached_input=0.05)
    assert (
        frontier.scaled({"L": prices["L"], "S": Price(input=1, output=1)}, "L", 0.5)[
            "S"
        ].cached_input
        is None
    )  # "as input" stays "as input"


def test_the_sweep_runs_from_this_machine_s_ratio_down_to_a_twentieth():
    assert frontier.sweep_ratios(0.69) == [0.69, *frontier.RATIOS]
    assert frontier.sweep_ratios(0.45, (0.1, 0.5, 0.4, 0.01)) == [0.45, 0.4, 0.1, 0.01]


def test_a_pool_without_a_spread_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="two agents or more"):
        frontier.next_dearest({"L": PRICES["L"]})
    free = {"M": PRICES["M"], "L": Price(input=0.0, output=0.0)}
    with pytest.raises(ConfigError, match="L's drafts cost nothing"):
        frontier.draft_cost_ratio(TEST, free, "M", "L")


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([(0.6, 1.2), (0.4, 0.8)], 0.5),
        ([(0.6, 1.1), (0.5, 1.0), (0.3, 0.9), (0.1, 0.7)], 0.5),  # equal at 0.5, less below
        ([(0.6, 0.9), (0.4, 0.8)], 0.6),  # cheaper already at the top of the range
        ([(0.6, 1.3), (0.4, 1.1)], None),
        ([(0.6, 1.2), (0.5, math.nan), (0.4, 0.8)], 0.5),  # a point not replayed is skipped
        ([], None),
    ],
)
def test_the_break_even_ratio_is_interpolated_where_the_cost_crosses_one(curve, expected):
    found = frontier.break_even(curve)
    assert found == pytest.approx(expected) if expected is not None else found is None


def test_the_named_ratio_is_the_next_dearest_agent_s_draft_cost_over_the_largest_s():
    assert frontier.next_dearest(PRICES) == "M"
    assert frontier.draft_cost_ratio(TEST, PRICES, "M", "L") == pytest.approx(0.25)


def test_a_sweep_prices_every_method_at_each_ratio_and_finds_the_break_even():
    lines: list[str] = []
    sweep = frontier.sweep(TRAIN, TEST, "t", PRICES, LEAN, EMBEDDINGS, (0.22, 0.1), lines.append)
    assert [p.ratio for p in sweep.points] == pytest.approx([0.25, 0.22, 0.1])
    assert [p.factor for p in sweep.points] == pytest.approx([1.0, 0.88, 0.4])
    for p in sweep.points:
        assert p.cost_ratio(frontier.LEAN) == pytest.approx(p.ratio + 0.8)
        assert p.cost_ratio("oracle") == pytest.approx((4 * p.ratio + 16) / 20)
        assert p.pass_at_1(frontier.LEAN) == 1.0 and p.missing is None
    assert sweep.break_even == pytest.approx(0.2)
    assert len(lines) == 3 and "SALE-lean 1.05× always-L" in lines[0]
    frontier.sweep(TRAIN, TEST, "t", PRICES, LEAN, EMBEDDINGS, (0.3, 0.1), lines.append)
    assert "left out [0.3], not below this machine's ratio 0.250" in lines[3]
    page = frontier_page.markdown([sweep], "sale bench frontier")
    assert "below r = 0.20" in page and "| 0.220 | 0.880 |" in page
    assert "replayed at 3 of 3 points; the archive holds every draft" in page


def test_a_draft_the_archive_lacks_is_reported_not_computed():
    """With feedback, L would fix M's failing draft: no such draft is in TEST."""
    fixing = LEAN.model_copy(update={"feedback": True})
    sweep = frontier.sweep(TRAIN, TEST, "t", PRICES, fixing, EMBEDDINGS, (0.1,), lambda _: None)
    assert all(p.missing == "t4: no escalation of L after M in the archive" for p in sweep.points)
    assert all(frontier.LEAN not in p.rows and "oracle" in p.rows for p in sweep.points)
    page = frontier_page.markdown([sweep], "sale bench frontier")
    assert "SALE-lean not replayed: t4: no escalation of L after M" in page
    assert "SALE-lean was replayed at no ratio" in page
    assert "SALE-lean was replayed at 0 of 2 points; at 2 the archive lacks" in page


@pytest.mark.parametrize("bad", ["0", "-0.1", "nan", "half"])
def test_a_ratio_that_is_not_above_zero_is_refused_by_name(bad, capsys):
    from marketplace.app.cli import main

    with pytest.raises(SystemExit) as done:  # argparse's usage error, before anything starts
        main(["bench", "frontier", "--ratios", bad])
    assert done.value.code == 2
    assert f"--ratios: a ratio is a number above 0, not '{bad}'" in capsys.readouterr().err
