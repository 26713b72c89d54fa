"""`sale report --bench`: the benchmark's report, every method over the matrix and the live
runs, as markdown tables and plots (`sale report` alone is the log's own: `log.summary`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from marketplace.core.measures import Prices, TaskRun
from marketplace.evaluation.baselines import by_price
from marketplace.log.summary import largest_agent, log_runs, price_text
from marketplace.shared.config import Config

if TYPE_CHECKING:
    from marketplace.evaluation.matrix import Matrix
    from marketplace.evaluation.prices import PriceList


# --- the benchmark ---------------------------------------------------------------------------

NO_PAPER = (
    "SALE-paper (round 0 and its ablations) is not in the table: no evaluation task has every "
    "agent's plan and review in the matrix (`sale bench compare` without `--no-plans` computes "
    "them)."
)


LIVE_NAMES = {
    "lean": "SALE-lean, live",
    "full": "SALE-paper with refinement, live",
    "no-memory": "SALE-paper with refinement, no memory, live",
}


async def live_runs(server_url: str, matrix: str) -> dict[str, list[list[TaskRun]]]:
    """Each live run as its log tells it: method name → one list of runs per task order."""
    from marketplace.evaluation.live import VARIANTS, run_name
    from marketplace.shared.database import with_database

    conn = await asyncpg.connect(server_url)
    try:
        names = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()
    found: dict[str, list[list[TaskRun]]] = {}
    for variant in VARIANTS:
        for order in range(100):
            if run_name(matrix, variant, order) not in names:
                continue
            run = await asyncpg.connect(with_database(server_url, run_name(matrix, variant, order)))
            try:
                runs, _, _ = await log_runs(run)  # priced later, at the config's prices
            finally:
                await run.close()
            if runs:
                found.setdefault(LIVE_NAMES[variant], []).append(runs)
    return found


def on_tasks(
    live: dict[str, list[list[TaskRun]]], tasks: set[str]
) -> dict[str, list[list[TaskRun]]]:
    """The live runs cut to the evaluation's tasks; a run with none of them is left out (a live
    run on HumanEval says nothing of an MBPP evaluation)."""
    kept = {}
    for name, reps in live.items():
        cut = [[r for r in runs if r.task_id in tasks] for runs in reps]
        if all(cut):
            kept[name] = cut
    return kept


async def bench_report(
    config: Config,
    train_specs: Sequence[str],
    test_specs: Sequence[str],
    out: Path,
    price_list: PriceList | None = None,
) -> str:
    """Writes `out/README.md` and the plots; returns the markdown.

    The first table compares every method replayed from the matrix on every evaluation task;
    when live runs exist, a second compares them all on the tasks the live runs finished.
    With a `price_list` (a user's, `marketplace.evaluation.prices`), every method is priced and
    the lean auction decides at its prices; the live runs, which decided at the config's, are
    left out."""
    from marketplace.evaluation import baselines, matrix, table
    from marketplace.evaluation.prices import repriced_lean
    from marketplace.shared import embeddings

    prices = price_list.prices if price_list else {a.id: a.price for a in config.agents}
    largest = largest_agent(prices)
    train = await matrix.load_split(config, train_specs)
    test = await matrix.load_split(config, test_specs)
    vectors = baselines.embeddings_for([train, test], embeddings.embed)
    lean = config.auction.lean
    lean = repriced_lean(lean, train, prices) if price_list else lean
    replayed = table.matrix_methods(train, test, config.auction.weights, prices, vectors, lean)
    live = {} if price_list else await _live_on(config, test)
    out.mkdir(parents=True, exist_ok=True)
    scored = test.kind == "search"
    sections = [
        _bench_section("Replayed from the matrix", replayed, prices, largest, out, "", scored)
    ]
    if not test.complete_tasks(plans=True):
        sections.append(NO_PAPER)
    if live:
        both = {**replayed, **live}
        sections.append(
            _bench_section("With the live runs", both, prices, largest, out, "live_", scored)
        )
    if "SALE-lean" in replayed:
        sections.append(
            table.target(table.rows(replayed, prices, largest), "SALE-lean", largest)
            + "\n\nIn order 0: "
            + table.diagnosis(replayed["SALE-lean"][0], replayed[f"always {largest}"][0])
        )
    if live.get(LIVE_NAMES["lean"]) and lean.priors:
        sections.append(lean_agreement(live[LIVE_NAMES["lean"]], test, config, prices, vectors))
    shares = {name: reps[0] for name, reps in {**replayed, **live}.items() if "SALE" in name}
    if shares:  # no SALE method ran: nothing moves between tiers
        table.plot_shares(shares, bench_agents(prices), 20, out / "shares_over_time.png")
    text = (
        "\n\n".join(sections)
        + f"\n\nEvaluation: {' '.join(test_specs)} ({len(test.complete_tasks())} tasks in the "
        f"matrix, {len(test.complete_tasks(plans=True))} with every agent's bid and review, "
        f"{len(test.unchecked & set(test.complete_tasks()))} that print no example to check). "
        f"kNN trained on {' '.join(train_specs)} "
        f"({len(train.complete_tasks())} tasks, {len(train.complete_tasks(plans=True))} with "
        f"bids and reviews). {_prices_note(price_list, prices)} The paper's weights (from "
        f"the config; `sale weights fit` fits them): {config.auction.weights.model_dump()}.\n\n"
        + ("![shares over time](shares_over_time.png)\n" if shares else "")
    )
    (out / "README.md").write_text(text)
    return text


async def _live_on(config: Config, test: Matrix) -> dict[str, list[list[TaskRun]]]:
    """The live runs of `test`'s matrix, cut to its tasks."""
    from marketplace.evaluation import matrix

    found = await live_runs(config.database.url, matrix.fingerprint(config.agents, test.kind))
    return on_tasks(found, set(test.complete_tasks()))


def _prices_note(price_list: PriceList | None, prices: Prices) -> str:
    """Which prices the report is at: the config's (CPU-seconds), or the user's list."""
    if price_list is None:
        return f"Input/output prices per million tokens (CPU-seconds): {price_text(prices)}."
    return (
        f"Input/output prices per million tokens from {price_list.source}: "
        f"{price_text(prices)} (the lean auction decided at these prices, its priors refitted "
        "on the training split; live runs, made at the config's prices, are left out)."
    )


def lean_agreement(
    runs: list[list[TaskRun]], test: Matrix, config: Config, prices: Prices, vectors: dict
) -> str:
    """Each live lean run against the replay of its own tasks, in its own order, from the
    matrix: the live marketplace and the benchmark must take the same decisions."""
    from marketplace.core.lean_policy import Prior, settings_of
    from marketplace.evaluation import lean_replay, table

    lean = config.auction.lean
    priors = {a: Prior(**p.model_dump()) for a, p in lean.priors.items()}
    lines = ["Live lean runs against their replay from the matrix (same tasks, same order):", ""]
    for order, live in enumerate(runs):
        tasks = [r.task_id for r in live]
        replayed = lean_replay.lean_runs(test, tasks, priors, settings_of(lean), prices, vectors)
        lines.append(f"- order {order}: {table.agreement(live, replayed, prices)}")
    return "\n".join(lines)


def _bench_section(
    title: str,
    methods: dict[str, list[list[TaskRun]]],
    prices: Prices,
    largest: str,
    out: Path,
    prefix: str,
    scored: bool = False,
) -> str:
    """A table of `methods` and its plot; `scored` (search): pass@1 is the exact match, and
    the mean token F1 is shown beside it."""
    from marketplace.evaluation import table

    rows = table.rows(methods, prices, largest)
    plot = f"{prefix}cost_vs_pass.png"
    table.plot_cost_vs_pass(rows, out / plot, largest)
    tasks = rows[0].result.tasks
    graded = " (search: pass@1 is the exact match with a gold answer)" if scored else ""
    return (
        f"### {title} ({tasks} tasks every method ran){graded}\n\n"
        f"{table.markdown(rows, scored)}\n\n"
        f"![cost vs pass@1]({plot})"
    )


def bench_agents(prices: Prices) -> list[str]:
    return by_price(list(prices), prices)
