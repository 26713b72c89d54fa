"""Paired bootstrap intervals on hand-made per-task values."""

from __future__ import annotations

import math

import pytest

from marketplace.evaluation.bootstrap import paired


def test_the_same_method_differs_by_nothing_with_certainty():
    same = paired([1, 0, 1], [2.0, 3.0, 1.0], [1, 0, 1], [2.0, 3.0, 1.0])
    assert (same.pass_delta.low, same.pass_delta.high) == (0.0, 0.0)
    assert same.cost_ratio.low == pytest.approx(1.0) == same.cost_ratio.high


def test_a_method_that_passes_more_for_half_the_cost_has_intervals_that_say_so():
    passed, ref_passed = [1] * 40 + [0] * 10, [1] * 30 + [0] * 20
    result = paired(passed, [1.0] * 50, ref_passed, [2.0] * 50)
    assert result.pass_delta.estimate == pytest.approx(0.2)
    assert 0 < result.pass_delta.low < 0.2 < result.pass_delta.high
    assert result.cost_ratio.estimate == pytest.approx(0.5) == result.cost_ratio.low


def test_a_free_reference_has_no_ratio_and_mismatched_lengths_are_refused():
    free = paired([1], [1.0], [1], [0.0])
    assert math.isnan(free.cost_ratio.estimate) and math.isnan(free.cost_ratio.low)
    with pytest.raises(ValueError, match="same, non-zero number of tasks"):
        paired([1, 0], [1.0], [1], [1.0])
