"""The benchmark's comparison: every method on the evaluation split, from one matrix and the log.

Methods that only choose an agent per task (always-X, random, cascade, kNN, oracle) and SALE's
auction without refinement are replayed over the matrix (`marketplace.evaluation.baselines`; the
auction only on the tasks where every agent bid and reviewed, and left out when there are none);
SALE with refinement ran through the live marketplace, once per task order, and is read from
the Postgres log of each run (`marketplace.log.summary.log_runs`). Every figure is computed here
from those values; `sale report --bench` writes them as markdown and PNG plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from marketplace.core.measures import (
    Comparison,
    MethodResult,
    Prices,
    Spread,
    TaskRun,
    compare,
    cost,
    mean_result,
    share_over_time,
    spread,
    summarize,
)
from marketplace.evaluation import baselines, lean_replay
from marketplace.evaluation.bootstrap import Interval, Paired, paired
from marketplace.evaluation.matrix import Matrix
from marketplace.shared import extras
from marketplace.shared.config import LeanConfig
from schemas.events import Weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RANDOM_SEEDS = range(10)
FORESEEN = "foresight of the checks (a bound)"


LEAN_NAMES: dict[str, lean_replay.Variant] = {
    "SALE-lean": "full",
    "SALE-lean, no memory value": "no memory",
    "SALE-lean, no evidence": "no evidence",
    "SALE-lean, no price-order calls": "all at once",
}
ORDERS = 3  # task orders for the methods whose memory depends on the order


@dataclass(frozen=True)
class Row:
    """One method: its mean result over repetitions (seeds or task orders), their spread, and
    paired bootstrap intervals of its difference from always-largest (price and CPU-seconds)."""

    result: MethodResult
    pass_spread: Spread
    cost_spread: Spread
    versus_largest: Comparison
    paired: Paired
    seconds_ratio: Interval
    mean_score: float | None = None  # the hidden grade's mean score (a search's token F1)


def without_jury(weights: Weights) -> Weights:
    return weights.model_copy(update={"jury": 0.0, "jurors": dict.fromkeys(weights.jurors, 0.0)})


def matrix_methods(
    train: Matrix,
    test: Matrix,
    weights: Weights,
    prices: Prices,
    embeddings: Mapping[str, np.ndarray],
    lean: LeanConfig | None = None,
) -> dict[str, list[list[TaskRun]]]:
    """Each replayed method's runs, one list per repetition; the always-X methods cheapest
    first (`baselines.by_price`)."""
    ordered = baselines.by_price(test.agents, prices)
    methods: dict[str, list[list[TaskRun]]] = {
        f"always {agent}": [baselines.always(test, agent)] for agent in ordered
    }
    methods["random"] = [baselines.random_choice(test, seed) for seed in RANDOM_SEEDS]
    methods["cascade (FrugalGPT-style)"] = [baselines.cascade(test, prices)]
    methods["kNN router"] = [baselines.knn(train, test, embeddings, prices)]
    methods["oracle"] = [baselines.oracle(test, prices)]
    methods[FORESEEN] = [baselines.foreseen(test, prices)]
    if test.complete_tasks(plans=True):  # else the auction has nothing to run on
        methods.update(sale_methods(test, weights, prices))
    if lean is not None and lean.priors:
        methods.update(lean_replays(test, lean, prices, embeddings))
    return methods


def lean_replays(
    test: Matrix,
    table: LeanConfig,
    prices: Prices,
    embeddings: Mapping[str, np.ndarray],
    names: Mapping[str, lean_replay.Variant] = LEAN_NAMES,
) -> dict[str, list[list[TaskRun]]]:
    """SALE-lean and its ablations (`names`: method name → variant), each in `ORDERS` task
    orders (one without memory: its runs do not depend on the order)."""
    from marketplace.core.lean_policy import Prior, settings_of

    priors = {a: Prior(**p.model_dump()) for a, p in table.priors.items()}
    settings = settings_of(table)
    tasks = test.complete_tasks()
    methods = {}
    for name, variant in names.items():
        orders = lean_replay.orders(tasks, 1 if variant == "no memory" else ORDERS)
        runs = [
            lean_replay.lean_runs(test, o, priors, settings, prices, embeddings, variant)
            for o in orders
        ]
        methods[name] = [sorted(r, key=lambda run: tasks.index(run.task_id)) for r in runs]
    return methods


def sale_methods(test: Matrix, weights: Weights, prices: Prices) -> dict[str, list[list[TaskRun]]]:
    """SALE's round 0 and its ablations, on the tasks where every agent bid and reviewed."""
    methods: dict[str, list[list[TaskRun]]] = {}
    methods["SALE-paper round 0"] = [baselines.sale_round0(test, weights, prices)]
    no_entropy = weights.model_copy(update={"entropy": 0.0})
    methods["SALE-paper round 0, no entropy"] = [baselines.sale_round0(test, no_entropy, prices)]
    no_jury = without_jury(weights)
    methods["SALE-paper round 0, no jury"] = [baselines.sale_round0(test, no_jury, prices)]
    return methods


def rows(
    methods: Mapping[str, Sequence[Sequence[TaskRun]]], prices: Prices, largest: str
) -> list[Row]:
    """The table: every method against always-largest, on the tasks every method ran."""
    common = set.intersection(*({r.task_id for r in reps[0]} for reps in methods.values()))
    results = {
        name: [
            summarize(name, [r for r in rep if r.task_id in common], prices, largest)
            for rep in reps
        ]
        for name, reps in methods.items()
    }
    reference = results[f"always {largest}"][0]
    tasks = sorted(common)
    ref = per_task(methods[f"always {largest}"], tasks, prices)
    table = []
    for name, reps in results.items():
        mean = mean_result(name, reps)
        mine = per_task(methods[name], tasks, prices)
        table.append(
            Row(
                mean,
                spread([r.pass_at_1 for r in reps]),
                spread([r.cost for r in reps]),
                compare(mean, reference),
                paired(mine[0], mine[1], ref[0], ref[1]),
                paired(mine[0], mine[2], ref[0], ref[2]).cost_ratio,
                mean_score(methods[name], tasks),
            )
        )
    return table


def mean_score(reps: Sequence[Sequence[TaskRun]], tasks: Sequence[str]) -> float | None:
    """The mean over `tasks` of each task's score averaged over the repetitions; None if a run
    has no score (a method read from the log, say)."""
    by_task = [{r.task_id: r.score for r in rep} for rep in reps]
    scores = [[rep[t] for rep in by_task] for t in tasks]
    if not scores or any(s is None for per in scores for s in per):
        return None
    return fmean(fmean(per) for per in scores)  # type: ignore[arg-type]


def per_task(
    reps: Sequence[Sequence[TaskRun]], tasks: Sequence[str], prices: Prices
) -> tuple[list[float], list[float], list[float]]:
    """Each task's pass rate, cost and CPU-seconds, averaged over the repetitions."""
    by_task = [{r.task_id: r for r in rep} for rep in reps]
    passed, costs, seconds = [], [], []
    for task_id in tasks:
        runs = [rep[task_id] for rep in by_task]
        passed.append(fmean(r.passed for r in runs))
        costs.append(fmean(cost(r.spend, prices) for r in runs))
        seconds.append(fmean(sum(s.seconds for s in r.spend) for r in runs))
    return passed, costs, seconds


def markdown(table: Sequence[Row], scored: bool = False) -> str:
    """The comparison table; intervals are paired bootstrap 95% intervals against
    always-largest, spreads (in parentheses) the range over repetitions. `scored` (search):
    pass@1 is the exact match, and a column gives the mean token F1."""
    f1_head, f1_rule = (" mean F1 |", "---:|") if scored else ("", "")
    lines = [
        f"| method | runs | pass@1 |{f1_head} Δ pass@1 vs always-largest | cost "
        "| cost vs always-largest | CPU-s | CPU-s vs always-largest | auction share "
        "| largest agent's share | largest use cut | executed by |",
        f"|---|---:|---:|{f1_rule}---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in table:
        r, c, p = row.result, row.versus_largest, row.paired
        span = (
            f" ({row.pass_spread.low:.1%}–{row.pass_spread.high:.1%})"
            if row.pass_spread.n > 1
            else ""
        )
        f1 = ""
        if scored:
            f1 = " – |" if row.mean_score is None else f" {row.mean_score:.3f} |"
        executors = ", ".join(f"{a} {n}" for a, n in sorted(r.executors.items()))
        delta = p.pass_delta
        lines.append(
            f"| {r.method} | {row.pass_spread.n} | {r.pass_at_1:.1%}{span} |{f1} "
            f"{100 * delta.estimate:+.1f} [{100 * delta.low:+.1f}, {100 * delta.high:+.1f}] "
            f"| {money(r.cost)} | {p.cost_ratio.show('.2f')} | {r.seconds:,.0f} "
            f"| {row.seconds_ratio.show('.2f')} | {r.auction_share:.1%} "
            f"| {r.largest_share:.1%} | {c.largest_use_cut:.0%} | {executors} |"
        )
    return "\n".join(lines)


def money(amount: float) -> str:
    """A cost as the tables show it: to a tenth from 10 up (CPU-seconds run to thousands), to
    three significant figures below (a hosted price list's dollars: 0.0734)."""
    return f"{amount:,.1f}" if abs(amount) >= 10 else f"{amount:.3g}"


def pyplot() -> ModuleType:
    """matplotlib's pyplot drawing into files (Agg), from the `bench` extra."""
    matplotlib = extras.need("matplotlib", "bench", "plotting the benchmark's results")
    matplotlib.use("Agg")
    return extras.need("matplotlib.pyplot", "bench", "plotting the benchmark's results")


MARKERS = "osD^vP*Xh<>pd8H"  # filled shapes, each unlike the others


def styles(count: int) -> list[tuple[tuple[float, ...], str]]:
    """`count` (colour, marker) pairs, no two alike: the strong colours of tab20 first, then
    its light ones, each with a marker of its own, so a point is told apart by both."""
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors
    colours = [*palette[0::2], *palette[1::2]]
    return [(colours[i % len(colours)], MARKERS[i % len(MARKERS)]) for i in range(count)]


def cost_vs_pass_figure(table: Sequence[Row], largest: str) -> Figure:
    """Each method a point of its own colour and marker, named in the legend beside the plot
    (no label is printed on the plot, so none can cover another), with its spread over
    repetitions as a bar; dashed lines through always-largest's cost and pass@1 split the plot
    into better-and-cheaper (above left) and the rest."""
    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(10, 5.5))
    for row, (colour, marker) in zip(table, styles(len(table)), strict=True):
        r = row.result
        low, high = row.pass_spread.low, row.pass_spread.high
        ax.errorbar(
            r.cost,
            100 * r.pass_at_1,
            yerr=[[100 * max(r.pass_at_1 - low, 0)], [100 * max(high - r.pass_at_1, 0)]],
            fmt=marker,
            color=colour,
            markersize=7,
            markeredgecolor="black",
            markeredgewidth=0.5,
            capsize=3,
            label=f"{r.method} ({100 * r.pass_at_1:.1f}%, {money(r.cost)})",
        )
    reference = next(
        (row.result for row in table if row.result.method == f"always {largest}"), None
    )
    if reference is not None:
        style = {"color": "0.35", "linestyle": "--", "linewidth": 1, "zorder": 0}
        ax.axhline(100 * reference.pass_at_1, **style, label=f"always {largest}: pass@1 and cost")
        ax.axvline(reference.cost, **style)
    ax.set_xscale("log")  # the methods crowd within a factor of two; a few cost ten times more
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}" if x >= 10 else f"{x:.2g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("total cost, log scale (price per million tokens × tokens / 1e6)")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(f"Cost against pass@1 ({table[0].result.tasks} tasks; bars: spread over runs)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="method (pass@1, cost)",
        title_fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    return fig


def plot_cost_vs_pass(table: Sequence[Row], path: Path, largest: str) -> None:
    plt = pyplot()
    fig = cost_vs_pass_figure(table, largest)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_shares(
    runs_by_name: Mapping[str, Sequence[TaskRun]], agents: Sequence[str], window: int, path: Path
) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(
        len(runs_by_name), 1, figsize=(8, 2.6 * len(runs_by_name)), squeeze=False
    )
    for ax, (name, runs) in zip(axes[:, 0], runs_by_name.items(), strict=True):
        shares = share_over_time(runs, agents, window)
        xs = [window * i for i in range(len(shares))]
        bottom = np.zeros(len(shares))
        for agent in agents:
            values = np.array([s.get(agent, 0.0) for s in shares])
            ax.bar(xs, values, width=window * 0.9, bottom=bottom, label=agent, align="edge")
            bottom += values
        ax.set_title(f"{name}: share of tasks per agent, {window} tasks at a time")
        ax.set_ylim(0, 1)
        ax.set_ylabel("share")
    axes[-1, 0].set_xlabel("tasks done (in order)")
    axes[0, 0].legend(title="agent", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def target(table: Sequence[Row], method: str, largest: str) -> str:
    """The issue's target for `method`, checked: at least half of the oracle's gain over
    always-largest on pass@1 and on cost (in prices and in CPU-seconds), the auction at most 15%
    of the method's cost and the largest agent executing at most 45% of the tasks."""
    by_name = {row.result.method: row for row in table}
    if method not in by_name or "oracle" not in by_name:
        return ""
    row, oracle, ref = by_name[method], by_name["oracle"], by_name[f"always {largest}"]
    need_pass = ref.result.pass_at_1 + (oracle.result.pass_at_1 - ref.result.pass_at_1) / 2
    need_cost = 1 - (1 - oracle.paired.cost_ratio.estimate) / 2
    need_seconds = 1 - (1 - oracle.seconds_ratio.estimate) / 2
    checks = [
        ("pass@1", row.result.pass_at_1, ">=", need_pass, ".1%"),
        ("cost vs always-largest", row.paired.cost_ratio.estimate, "<=", need_cost, ".3f"),
        ("CPU-s vs always-largest", row.seconds_ratio.estimate, "<=", need_seconds, ".3f"),
        ("auction share", row.result.auction_share, "<=", 0.15, ".1%"),
        ("largest agent's share", row.result.largest_share, "<=", 0.45, ".1%"),
    ]
    lines = [f"Target for {method} (half of the oracle's gain over always-{largest}):", ""]
    for name, got, op, need, fmt in checks:
        met = got >= need if op == ">=" else got <= need
        verdict = "met" if met else "missed"
        lines.append(f"- {name}: {got:{fmt}} (target {op} {need:{fmt}}): {verdict}")
    if FORESEEN in by_name:
        lines.append(_bound(by_name[FORESEEN], need_cost))
    return "\n".join(lines)


def _bound(foreseen: Row, need_cost: float) -> str:
    """Whether the cost target is within reach of a method that, like SALE-lean, keeps the
    cheapest draft that passes its examples: foresight of the checks is its cheapest case."""
    ratio = foreseen.paired.cost_ratio.estimate
    reach = "within reach of" if ratio <= need_cost else "beyond"
    return (
        f"- bound: with foresight of the checks, {ratio:.3f} × always-largest at "
        f"{foreseen.result.pass_at_1:.1%} pass@1, so the cost target is {reach} any method "
        "that keeps the cheapest draft passing its examples"
    )


def diagnosis(method: Sequence[TaskRun], largest: Sequence[TaskRun]) -> str:
    """Where a method and always-largest part ways, task by task (one repetition)."""
    ref = {r.task_id: r for r in largest}
    lost = [r for r in method if ref[r.task_id].passed and not r.passed]
    won = [r for r in method if r.passed and not ref[r.task_id].passed]

    def who(runs: Sequence[TaskRun]) -> str:
        counts: dict[str, int] = {}
        for r in runs:
            asked = "→".join(s.agent_id for s in r.spend)
            counts[asked] = counts.get(asked, 0) + 1
        return ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))

    return (
        f"Tasks always-largest passes and it fails: {len(lost)} (agents asked: {who(lost)}); "
        f"tasks it passes and always-largest fails: {len(won)} (agents asked: {who(won)})."
    )


def agreement(live: Sequence[TaskRun], replayed: Sequence[TaskRun], prices: Prices) -> str:
    """How a live run and the replay of the same tasks in the same order agree, task by task."""
    by_task = {r.task_id: r for r in replayed}
    same_winner = sum(r.executor == by_task[r.task_id].executor for r in live)
    same_verdict = sum(r.passed == by_task[r.task_id].passed for r in live)
    live_cost = cost([s for r in live for s in r.spend], prices)
    replay_cost = cost([s for r in replayed for s in r.spend], prices)
    return (
        f"{len(live)} tasks: the same winner on {same_winner}, the same verdict on "
        f"{same_verdict}; pass@1 {fmean(r.passed for r in live):.1%} live, "
        f"{fmean(r.passed for r in replayed):.1%} replayed; cost {live_cost:,.1f} live, "
        f"{replay_cost:,.1f} replayed."
    )
