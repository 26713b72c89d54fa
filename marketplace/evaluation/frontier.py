"""`sale bench frontier`: would SALE pay at someone else's prices? The archived drafts priced at
a sweep of price spreads between the small agents and the largest, every method replayed at
each.

The pricing rule: the largest agent keeps the config's prices; every other agent's prices (input,
cached input, output) are the config's times one factor, so the pool keeps its shape and only the
spread moves. A sweep point is named by the ratio r of the next-dearest agent's draft cost to
the largest's on the split (always-M's cost over always-L's, from the archived tokens): r is
this machine's ratio at factor 1 and falls with the factor, by default down to 1/20. The lean
auction's priors are refitted on the training split at each point (`prices.repriced_lean`).
Nothing is computed: a draft the lean replay needs and the archive lacks
(`lean_replay.Missing`) leaves SALE-lean out of that point, and the point says which draft.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from marketplace.core.measures import Prices, TaskRun, cost
from marketplace.evaluation import baselines, lean_replay, table
from marketplace.evaluation.matrix import Matrix
from marketplace.evaluation.prices import repriced_lean
from marketplace.log.summary import largest_agent
from marketplace.shared.config import Config, ConfigError, LeanConfig
from schemas.events import Price

RATIOS = (0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05)  # down to 1/20, below this machine's
LEAN = "SALE-lean"
CASCADE = "cascade (FrugalGPT-style)"
KNN = "kNN router"
METHODS = (LEAN, CASCADE, KNN, table.FORESEEN, "oracle")  # the columns, in this order

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Point:
    """One price spread on one split: each method's row against always-largest, and what the
    lean replay lacked there, if anything."""

    ratio: float
    factor: float
    output_ratio: float  # the next-dearest agent's output price over the largest's
    largest: str
    rows: dict[str, table.Row]
    missing: str | None = None

    def cost_ratio(self, method: str) -> float:
        """`method`'s cost over always-largest's; NaN where it was not replayed."""
        row = self.rows.get(method)
        return math.nan if row is None else row.paired.cost_ratio.estimate

    def pass_at_1(self, method: str) -> float:
        row = self.rows.get(method)
        return math.nan if row is None else row.result.pass_at_1

    @property
    def reference(self) -> str:
        return f"always {self.largest}"


@dataclass(frozen=True)
class Sweep:
    """One split's sweep, highest ratio first, and where SALE-lean starts to cost less."""

    split: str
    tasks: int
    points: list[Point]

    @property
    def break_even(self) -> float | None:
        return break_even([(p.ratio, p.cost_ratio(LEAN)) for p in self.points])


def scaled(prices: Prices, keep: str, factor: float) -> dict[str, Price]:
    """Every agent's prices but `keep`'s, each direction times `factor`."""
    return {
        agent: price if agent == keep else _times(price, factor) for agent, price in prices.items()
    }


def _times(price: Price, factor: float) -> Price:
    given = price.model_dump(exclude_none=True)  # a cached price left out stays "as input"
    return Price(**{direction: value * factor for direction, value in given.items()})


def next_dearest(prices: Prices) -> str:
    """The agent whose price names the spread: the dearest below the largest."""
    ranked = baselines.by_price(list(prices), prices)
    if len(ranked) < 2:
        raise ConfigError(f"a price spread needs two agents or more; the config has {ranked}")
    return ranked[-2]


def draft_cost_ratio(test: Matrix, prices: Prices, cheaper: str, dearer: str) -> float:
    """What always-`cheaper` costs over what always-`dearer` costs on `test`'s tasks."""

    def spent(agent: str) -> float:
        return cost([s for r in baselines.always(test, agent) for s in r.spend], prices)

    if not spent(dearer):
        raise ConfigError(f"{dearer}'s drafts cost nothing at the config's prices: no ratio to it")
    return spent(cheaper) / spent(dearer)


def sweep_ratios(start: float, ratios: Sequence[float] = RATIOS) -> list[float]:
    """This machine's ratio, then every ratio of `ratios` below it, highest first."""
    return [start, *sorted({r for r in ratios if r < start}, reverse=True)]


def break_even(curve: Sequence[tuple[float, float]]) -> float | None:
    """The ratio below which SALE-lean costs less than always-largest: `curve` is (ratio, its
    cost over always-largest's), highest ratio first; linear between the two sweep points that
    straddle 1, skipping NaN points (where the replay lacked a draft). The highest ratio itself
    when it is already cheaper there; None when no point of the range is."""
    curve = [(ratio, spent) for ratio, spent in curve if not math.isnan(spent)]
    if curve and curve[0][1] < 1:
        return curve[0][0]
    for (high, above), (low, below) in itertools.pairwise(curve):
        if above >= 1 > below:
            return low + (high - low) * (1 - below) / (above - below)
    return None


def point(
    train: Matrix,
    test: Matrix,
    lean: LeanConfig,
    prices: Prices,
    embeddings: Mapping[str, np.ndarray],
) -> tuple[dict[str, table.Row], str | None]:
    """Every method of the frontier and always-largest on `test` at `prices`, as table rows;
    and the draft the lean replay lacked, if it lacked one (then SALE-lean is not a row)."""
    largest = largest_agent(prices)
    methods: dict[str, list[list[TaskRun]]] = {
        f"always {largest}": [baselines.always(test, largest)],
        CASCADE: [baselines.cascade(test, prices)],
        KNN: [baselines.knn(train, test, embeddings, prices)],
        table.FORESEEN: [baselines.foreseen(test, prices)],
        "oracle": [baselines.oracle(test, prices)],
    }
    missing = None if lean.priors else "lean priors: the config has none (`sale lean fit`)"
    try:
        if lean.priors:
            repriced = repriced_lean(lean, train, prices)
            methods |= table.lean_replays(test, repriced, prices, embeddings, {LEAN: "full"})
    except lean_replay.Missing as lacked:
        missing = f"{lacked} in the archive"
    rows = table.rows(methods, prices, largest)
    return {row.result.method: row for row in rows}, missing


def sweep(
    train: Matrix,
    test: Matrix,
    split: str,
    config_prices: Prices,
    lean: LeanConfig,
    embeddings: Mapping[str, np.ndarray],
    ratios: Sequence[float] = RATIOS,
    progress: Progress = print,
) -> Sweep:
    """`test` at every ratio of the sweep, from this machine's down."""
    largest = largest_agent(config_prices)
    cheaper = next_dearest(config_prices)
    start = draft_cost_ratio(test, config_prices, cheaper, largest)
    points = []
    todo = sweep_ratios(start, ratios)
    if above := sorted(r for r in ratios if r >= start):
        progress(f"{split}: left out {above}, not below this machine's ratio {start:.3f}")
    for i, ratio in enumerate(todo, 1):
        factor = ratio / start
        prices = scaled(config_prices, largest, factor)
        rows, missing = point(train, test, lean, prices, embeddings)
        output = prices[cheaper].output / prices[largest].output
        points.append(Point(ratio, factor, output, largest, rows, missing))
        lean_cost = points[-1].cost_ratio(LEAN)
        said = f"{lean_cost:.2f}× always-{largest}" if not missing else f"not replayed: {missing}"
        progress(f"{split}: r = {ratio:.3f} ({i}/{len(todo)}): SALE-lean {said}")
    return Sweep(split, len(test.complete_tasks()), points)


async def frontier(
    config: Config,
    train_specs: Sequence[str],
    test_specs: Sequence[str],
    ratios: Sequence[float] = RATIOS,
    progress: Progress = print,
) -> list[Sweep]:
    """One sweep per task set of `test_specs` (each its own split), the kNN router and the lean
    priors trained on `train_specs`; from the matrix in the database alone."""
    from marketplace.evaluation import matrix
    from marketplace.shared import embeddings

    prices = {a.id: a.price for a in config.agents}
    train = await matrix.load_split(config, train_specs)
    tests = [await matrix.load_split(config, [spec]) for spec in test_specs]
    progress("embedding the tasks' prompts (kNN router, lean memory)")
    vectors = baselines.embeddings_for([train, *tests], embeddings.embed)
    lean = config.auction.lean
    return [
        sweep(train, test, spec, prices, lean, vectors, ratios, progress)
        for spec, test in zip(test_specs, tests, strict=True)
    ]
