"""The benchmark's measures, pure: runs of a method over tasks in, its numbers out.

A method (SALE, a router, "always the largest agent") handles each task once; a `TaskRun` says
who executed it, whether that passed the hidden checks, and every call's usage, by agent and by
part of the task's life (the parts of the `spend` table). Money is applied here, from a price
table, and not when the runs are made: one set of runs can be priced several ways. It is applied
per direction, as model price lists quote it: a prompt token at the agent's input price, a prompt
token the backend already held evaluated at its cached input price, a generated token at its
output price.

Conventions:
- A task nobody executed (executor None) counts as failed, and under "none" among executors.
- Ratios over an empty denominator are 0 (an empty method has no pass rate and no shares),
  except `Comparison.cost_vs_largest` against a free reference, which is NaN: a plot should
  show a hole there, not a 0 that reads as "free".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Literal

from schemas.events import Price, Usage

Part = Literal["bids", "refinement", "jury", "execution"]
Prices = Mapping[str, Price]
"""Each agent's prices per million tokens, by direction, by agent id."""

AUCTION_PARTS: tuple[Part, ...] = ("bids", "refinement", "jury")
NONE = "none"  # the executors key of tasks nobody executed


@dataclass(frozen=True)
class Spend:
    """What one agent used on one part of one task: its tokens by direction (so each can be
    priced at its own rate) and the compute they took."""

    agent_id: str
    part: Part
    usage: Usage

    @property
    def tokens(self) -> int:
        return self.usage.total_tokens

    @property
    def seconds(self) -> float:
        return self.usage.seconds


@dataclass(frozen=True)
class TaskRun:
    """How one method handled one task."""

    task_id: str
    executor: str | None
    passed: bool
    spend: tuple[Spend, ...]
    score: float | None = None  # the hidden grade's score, where it says more (a search's F1)


def priced(usage: Usage, price: Price) -> float:
    """What one usage cost at one agent's prices, each direction at its own rate."""
    return price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)


def cost(spend: Iterable[Spend], prices: Prices) -> float:
    """What the tokens cost, each at its own agent's prices for its direction.

    An agent missing from `prices` is an error (KeyError), not free."""
    return sum(priced(s.usage, prices[s.agent_id]) for s in spend)


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class MethodResult:
    method: str
    tasks: int
    passed: int
    pass_at_1: float
    cost: float
    seconds: float
    auction_cost: float
    auction_share: float  # auction_cost / cost
    largest_share: float  # share of tasks executed by the largest agent
    executors: dict[str, int]  # tasks per executor id, "none" for tasks nobody executed


def summarize(method: str, runs: Sequence[TaskRun], prices: Prices, largest: str) -> MethodResult:
    """One method's totals over its runs."""
    spent = [s for run in runs for s in run.spend]
    total = cost(spent, prices)
    auction = cost((s for s in spent if s.part in AUCTION_PARTS), prices)
    passed = sum(1 for run in runs if run.passed and run.executor is not None)
    executors = Counter(run.executor or NONE for run in runs)
    return MethodResult(
        method=method,
        tasks=len(runs),
        passed=passed,
        pass_at_1=_ratio(passed, len(runs)),
        cost=total,
        seconds=sum(s.seconds for s in spent),
        auction_cost=auction,
        auction_share=_ratio(auction, total),
        largest_share=_ratio(executors[largest], len(runs)),
        executors=dict(executors),
    )


@dataclass(frozen=True)
class Comparison:
    """A method against the reference, "always the largest agent"."""

    result: MethodResult
    cost_vs_largest: float  # cost / reference cost (NaN if the reference cost nothing)
    largest_use_cut: float  # 1 − largest_share / reference largest_share
    pass_delta: float  # pass@1 − reference pass@1


def compare(result: MethodResult, reference: MethodResult) -> Comparison:
    return Comparison(
        result=result,
        cost_vs_largest=result.cost / reference.cost if reference.cost else math.nan,
        largest_use_cut=(
            1 - result.largest_share / reference.largest_share if reference.largest_share else 0.0
        ),
        pass_delta=result.pass_at_1 - reference.pass_at_1,
    )


@dataclass(frozen=True)
class Spread:
    """A number measured several times (task orders, seeds): its mean and its range."""

    mean: float
    low: float
    high: float
    n: int


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("a spread needs at least one value")
    return Spread(mean=fmean(values), low=min(values), high=max(values), n=len(values))


def mean_result(method: str, results: Sequence[MethodResult]) -> MethodResult:
    """The mean of one method's results over repetitions (task orders, seeds) of the same tasks.

    Rates and money are averaged; `passed` and each executor count are the rounded means (so
    the counts may not add up to `tasks` exactly); `auction_share` is recomputed from the mean
    costs, so that it stays auction_cost / cost.
    """
    if not results:
        raise ValueError("no results to average")
    if len({r.tasks for r in results}) != 1:
        raise ValueError("repetitions must cover the same number of tasks")
    keys = sorted({k for r in results for k in r.executors})
    auction, total = fmean(r.auction_cost for r in results), fmean(r.cost for r in results)
    return MethodResult(
        method=method,
        tasks=results[0].tasks,
        passed=round(fmean(r.passed for r in results)),
        pass_at_1=fmean(r.pass_at_1 for r in results),
        cost=total,
        seconds=fmean(r.seconds for r in results),
        auction_cost=auction,
        auction_share=_ratio(auction, total),
        largest_share=fmean(r.largest_share for r in results),
        executors={k: round(fmean(r.executors.get(k, 0) for r in results)) for k in keys},
    )


def share_over_time(
    runs: Sequence[TaskRun], agents: Sequence[str], window: int
) -> list[dict[str, float]]:
    """Each agent's share of executed tasks in consecutive windows of `window` runs, in run
    order: how the work moves between tiers as the auction's memory fills.

    The last window may be shorter (its shares are over its own length); tasks nobody executed
    belong to no agent, so a window's shares may add up to less than 1.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    shares = []
    for start in range(0, len(runs), window):
        chunk = runs[start : start + window]
        counts = Counter(run.executor for run in chunk)
        shares.append({agent: counts[agent] / len(chunk) for agent in agents})
    return shares
