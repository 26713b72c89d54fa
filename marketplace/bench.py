"""The benchmark's comparison: every method on the evaluation split, from one matrix and the log.

Methods that only choose an agent per task (always-X, random, cascade, kNN, oracle) and SALE's
auction without refinement are replayed over the matrix (`marketplace.routers`); SALE with
refinement ran through the live marketplace, once per task order, and is read from the Postgres
log of each run (`marketplace.report.log_runs`). Every figure is computed here from those
values; `sale report --bench` writes them as markdown and PNG plots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marketplace import routers
from marketplace.matrix import Matrix
from marketplace.metrics import (
    Comparison,
    MethodResult,
    Prices,
    Spread,
    TaskRun,
    compare,
    mean_result,
    share_over_time,
    spread,
    summarize,
)
from schemas.events import Weights

RANDOM_SEEDS = range(10)


@dataclass(frozen=True)
class Row:
    """One method: its mean result over repetitions (seeds or task orders) and their spread."""

    result: MethodResult
    pass_spread: Spread
    cost_spread: Spread
    versus_largest: Comparison


def without_jury(weights: Weights) -> Weights:
    return weights.model_copy(update={"jury": 0.0, "jurors": dict.fromkeys(weights.jurors, 0.0)})


def matrix_methods(
    train: Matrix,
    test: Matrix,
    weights: Weights,
    prices: Prices,
    embeddings: Mapping[str, np.ndarray],
) -> dict[str, list[list[TaskRun]]]:
    """Each replayed method's runs, one list per repetition."""
    ordered = routers.by_price(test.agents, prices)
    methods: dict[str, list[list[TaskRun]]] = {
        f"always {agent}": [routers.always(test, agent)] for agent in ordered
    }
    methods["random"] = [routers.random_choice(test, seed) for seed in RANDOM_SEEDS]
    methods["cascade (FrugalGPT-style)"] = [routers.cascade(test, prices)]
    methods["kNN router"] = [routers.knn(train, test, embeddings, prices)]
    methods["oracle"] = [routers.oracle(test, prices)]
    methods["SALE round 0"] = [routers.sale_round0(test, weights, prices)]
    no_entropy = weights.model_copy(update={"entropy": 0.0})
    methods["SALE round 0, no entropy"] = [routers.sale_round0(test, no_entropy, prices)]
    methods["SALE round 0, no jury"] = [routers.sale_round0(test, without_jury(weights), prices)]
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
    table = []
    for name, reps in results.items():
        mean = mean_result(name, reps)
        table.append(
            Row(
                mean,
                spread([r.pass_at_1 for r in reps]),
                spread([r.cost for r in reps]),
                compare(mean, reference),
            )
        )
    return table


def markdown(table: Sequence[Row]) -> str:
    lines = [
        "| method | runs | pass@1 | cost | cost vs always-largest | CPU-s | auction share "
        "| largest agent's share | largest use cut | executed by |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in table:
        r, c = row.result, row.versus_largest
        span = (
            f" ({row.pass_spread.low:.1%}–{row.pass_spread.high:.1%})"
            if row.pass_spread.n > 1
            else ""
        )
        executors = ", ".join(f"{a} {n}" for a, n in sorted(r.executors.items()))
        lines.append(
            f"| {r.method} | {row.pass_spread.n} | {r.pass_at_1:.1%}{span} | {r.cost:,.1f} "
            f"| {c.cost_vs_largest:.2f} | {r.seconds:,.0f} | {r.auction_share:.1%} "
            f"| {r.largest_share:.1%} | {c.largest_use_cut:.0%} | {executors} |"
        )
    return "\n".join(lines)


def plot_cost_vs_pass(table: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for row in table:
        r = row.result
        ax.errorbar(
            r.cost,
            100 * r.pass_at_1,
            yerr=[
                [100 * (r.pass_at_1 - row.pass_spread.low)],
                [100 * (row.pass_spread.high - r.pass_at_1)],
            ],
            fmt="o",
            capsize=3,
        )
        ax.annotate(
            r.method,
            (r.cost, 100 * r.pass_at_1),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("total cost (price units: CPU-seconds per million tokens × tokens / 1e6)")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("Cost against pass@1 per method (bars: spread over orders or seeds)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_shares(
    runs_by_name: Mapping[str, Sequence[TaskRun]], agents: Sequence[str], window: int, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    axes[0, 0].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


Embedder = Callable[[Sequence[str]], np.ndarray]


def embeddings_for(matrices: Sequence[Matrix], embed: Embedder) -> dict[str, np.ndarray]:
    """Unit vectors of every task's prompt, for the kNN router."""
    prompts = {t: p for m in matrices for t, p in m.prompts.items()}
    ids = sorted(prompts)
    vectors = embed([prompts[t] for t in ids])
    return dict(zip(ids, vectors, strict=True))
