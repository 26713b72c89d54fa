"""Paired bootstrap intervals: how sure a method's difference from always-largest is.

Two methods run on the same tasks are compared task by task: resampling the tasks with
replacement (the same draw for both, so a hard task stays hard for both) and recomputing the
difference of pass@1 and the ratio of costs gives their spread; the 2.5th and 97.5th
percentiles of 2,000 draws are the 95% interval. A method repeated over task orders contributes
each task's mean over the orders. Pure: numbers in, numbers out, seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DRAWS = 2_000


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def show(self, fmt: str) -> str:
        return f"{self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


@dataclass(frozen=True)
class Paired:
    """A method against the reference on the same tasks."""

    pass_delta: Interval  # pass@1 − reference pass@1
    cost_ratio: Interval  # cost / reference cost


def paired(
    passed: Sequence[float],
    cost: Sequence[float],
    ref_passed: Sequence[float],
    ref_cost: Sequence[float],
    draws: int = DRAWS,
    seed: int = 0,
) -> Paired:
    """Per-task values of a method and of the reference, in the same task order."""
    p, c = np.asarray(passed, float), np.asarray(cost, float)
    rp, rc = np.asarray(ref_passed, float), np.asarray(ref_cost, float)
    if not (len(p) == len(c) == len(rp) == len(rc)) or len(p) == 0:
        raise ValueError("paired values need the same, non-zero number of tasks")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(p), size=(draws, len(p)))
    deltas = p[picks].mean(axis=1) - rp[picks].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = c[picks].sum(axis=1) / rc[picks].sum(axis=1)
    ratios[~np.isfinite(ratios)] = np.nan  # a draw whose reference cost nothing
    return Paired(
        pass_delta=_interval(p.mean() - rp.mean(), deltas),
        cost_ratio=_interval(c.sum() / rc.sum() if rc.sum() else np.nan, ratios),
    )


def _interval(estimate: float, draws: np.ndarray) -> Interval:
    if np.isnan(draws).all():  # a free reference: no ratio to speak of
        return Interval(float(estimate), np.nan, np.nan)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return Interval(float(estimate), float(low), float(high))
