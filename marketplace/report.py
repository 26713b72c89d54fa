"""`sale report`: what the Postgres log says happened, as markdown tables.

Per task: who won and how, what each part of the auction and the execution cost, and whether
the result passed; then the run's totals (pass@1, cost, the auction's share of it, how the work
was shared between agents). The main job prints exactly this at its end, from the same log.

Costs are priced here, per direction, from the tokens the `spend` projection keeps (prompt, of
them held by the backend, generated) and a price table: the caller's (the configuration's), or
else the one the log itself tells (each agent's last heartbeat: its output and input prices; an
agent that never sent one at its bids' price in both directions). The log carries no cached
input price, so without the caller's table held prompt tokens are priced at the input price.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from marketplace.config import Config
from marketplace.metrics import AUCTION_PARTS, MethodResult, Prices, Spend, TaskRun, cost, summarize
from marketplace.routers import by_price
from schemas.events import Price, Usage

if TYPE_CHECKING:
    from marketplace.matrix import Matrix

# A task counts once its outcome is in: an auction closed by an interrupted run whose winner
# never executed is not a failure of the method, just unfinished.
_TASKS = """
SELECT a.task_id, a.winner_agent_id, a.reason, o.passed
FROM auctions a JOIN outcomes o ON o.task_id = a.task_id
WHERE a.closed_at IS NOT NULL AND ($1::text[] IS NULL OR a.task_id = ANY($1::text[]))
ORDER BY a.posted_at, a.task_id
"""
# A task posted again (a job resumed after an interruption mid-auction) is counted from its
# last posting: the work of the interrupted attempt was repeated, not added to.
_SPEND = """
SELECT s.task_id, s.agent_id, s.part, s.requests, s.prompt_tokens, s.completion_tokens,
       s.cached_tokens, s.cost, s.seconds
FROM spend s
JOIN events e ON e.event_id = s.event_id
LEFT JOIN (SELECT task_id, max(occurred_at) AS at FROM events WHERE type = 'TaskPosted'
           GROUP BY task_id) posted ON posted.task_id = s.task_id
WHERE ($1::text[] IS NULL OR s.task_id = ANY($1::text[]))
  AND (posted.at IS NULL OR e.occurred_at >= posted.at)
"""
# Each agent's prices as the log tells them: its last heartbeat, else the price it bid at.
_HEARTBEAT_PRICES = """
SELECT DISTINCT ON (agent_id) agent_id, (payload->>'price')::float8 AS output,
       (payload->>'input_price')::float8 AS input
FROM events WHERE type = 'AgentHeartbeat' AND agent_id IS NOT NULL
ORDER BY agent_id, id DESC
"""
_BID_PRICES = "SELECT DISTINCT ON (agent_id) agent_id, price FROM bids ORDER BY agent_id, round"


def _spent(row: asyncpg.Record) -> Spend:
    usage = Usage(
        requests=row["requests"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cached_tokens=row["cached_tokens"],
        cost=row["cost"],
        seconds=row["seconds"],
    )
    return Spend(row["agent_id"], row["part"], usage)


async def log_prices(conn: asyncpg.Connection) -> dict[str, Price]:
    """Each agent's prices as the log tells them (see the module's docstring)."""
    prices = {
        r["agent_id"]: Price(input=r["price"], output=r["price"])
        for r in await conn.fetch(_BID_PRICES)
    }
    for r in await conn.fetch(_HEARTBEAT_PRICES):
        output = r["output"]
        prices[r["agent_id"]] = Price(
            input=output if r["input"] is None else r["input"], output=output
        )
    return prices


async def log_runs(
    conn: asyncpg.Connection, task_ids: Sequence[str] | None = None, prices: Prices | None = None
) -> tuple[list[TaskRun], Prices, dict[str, str]]:
    """Every finished task (or those of `task_ids`) as a `TaskRun`, in posting order; the
    agents' prices (`prices`, else as the log tells them); and each task's decision reason."""
    wanted = list(task_ids) if task_ids is not None else None
    spend: dict[str, list[Spend]] = {}
    for row in await conn.fetch(_SPEND, wanted):
        spend.setdefault(row["task_id"], []).append(_spent(row))
    runs, reasons = [], {}
    for row in await conn.fetch(_TASKS, wanted):
        runs.append(
            TaskRun(
                task_id=row["task_id"],
                executor=row["winner_agent_id"],
                passed=bool(row["passed"]),
                spend=tuple(spend.get(row["task_id"], ())),
            )
        )
        reasons[row["task_id"]] = row["reason"]
    return runs, prices if prices is not None else await log_prices(conn), reasons


def largest_agent(prices: Prices) -> str:
    """The dearest agent by output price (ties: the lowest id): the one whose use the
    marketplace tries to cut."""
    return max(sorted(prices), key=lambda agent: prices[agent].output)


def price_text(prices: Prices) -> str:
    """`S 1/2, L 4/8 (cached 1)`: each agent's input/output price, and its cached input price
    where it has its own."""
    return ", ".join(
        f"{agent} {p.input:g}/{p.output:g}"
        + ("" if p.cached_input is None else f" (cached {p.cached_input:g})")
        for agent, p in prices.items()
    )


def task_table(runs: Sequence[TaskRun], prices: Prices, reasons: dict[str, str]) -> str:
    lines = [
        "| task | winner | decision | auction cost | execution cost | total | CPU-s | passed |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        auction = cost([s for s in run.spend if s.part in AUCTION_PARTS], prices)
        execution = cost([s for s in run.spend if s.part == "execution"], prices)
        seconds = sum(s.seconds for s in run.spend)
        lines.append(
            f"| {run.task_id} | {run.executor or '-'} | {reasons.get(run.task_id, '')} "
            f"| {auction:.6f} | {execution:.6f} | {auction + execution:.6f} | {seconds:.1f} "
            f"| {'yes' if run.passed else 'no'} |"
        )
    return "\n".join(lines)


def totals_table(result: MethodResult) -> str:
    shares = ", ".join(f"{agent} {count}" for agent, count in sorted(result.executors.items()))
    return "\n".join(
        [
            "| tasks | passed | pass@1 | cost | CPU-s | auction share | largest agent's share "
            "| executed by |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
            f"| {result.tasks} | {result.passed} | {result.pass_at_1:.1%} | {result.cost:.6f} "
            f"| {result.seconds:.1f} | {result.auction_share:.1%} | {result.largest_share:.1%} "
            f"| {shares} |",
        ]
    )


async def run_report(
    conn: asyncpg.Connection, task_ids: Sequence[str] | None = None, prices: Prices | None = None
) -> str:
    """The log's story of `task_ids` (default: every closed auction) as markdown, priced at
    `prices` (default: as the log tells them)."""
    runs, prices, reasons = await log_runs(conn, task_ids, prices)
    if not runs:
        return "No finished tasks in the log yet."
    result = summarize("SALE (live)", runs, prices, largest_agent(prices))
    price_list = price_text(dict(sorted(prices.items())))
    return (
        f"{task_table(runs, prices, reasons)}\n\n{totals_table(result)}\n\n"
        f"Costs at the agents' input/output prices per million tokens ({price_list}); CPU-s is "
        "the measured compute of every model call the tasks made."
    )


# --- the benchmark ---------------------------------------------------------------------------


LIVE_NAMES = {
    "lean": "SALE-lean, live",
    "full": "SALE-paper with refinement, live",
    "no-memory": "SALE-paper with refinement, no memory, live",
}


async def live_runs(server_url: str, matrix: str) -> dict[str, list[list[TaskRun]]]:
    """Each live run as its log tells it: method name → one list of runs per task order."""
    from marketplace.database import with_database
    from marketplace.live import VARIANTS, run_name

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


async def bench_report(
    config: Config, train_specs: Sequence[str], test_specs: Sequence[str], out: Path
) -> str:
    """Writes `out/README.md` and the plots; returns the markdown.

    The first table compares every method replayed from the matrix on every evaluation task;
    when live runs exist, a second compares them all on the tasks the live runs finished."""
    from marketplace import bench, embeddings, matrix

    prices = {a.id: a.price for a in config.agents}
    largest = largest_agent(prices)
    train = await matrix.load_split(config, train_specs)
    test = await matrix.load_split(config, test_specs)
    vectors = bench.embeddings_for([train, test], embeddings.embed)
    replayed = bench.matrix_methods(
        train, test, config.auction.weights, prices, vectors, config.auction.lean
    )
    live = await live_runs(config.database.url, matrix.fingerprint(config.agents))
    out.mkdir(parents=True, exist_ok=True)
    sections = [_bench_section("Replayed from the matrix", replayed, prices, largest, out, "")]
    if live:
        both = {**replayed, **live}
        sections.append(_bench_section("With the live runs", both, prices, largest, out, "live_"))
    if "SALE-lean" in replayed:
        sections.append(
            bench.target(bench.rows(replayed, prices, largest), "SALE-lean", largest)
            + "\n\nIn order 0: "
            + bench.diagnosis(replayed["SALE-lean"][0], replayed[f"always {largest}"][0])
        )
    if live.get(LIVE_NAMES["lean"]) and config.auction.lean.priors:
        sections.append(lean_agreement(live[LIVE_NAMES["lean"]], test, config, prices, vectors))
    shares = {name: reps[0] for name, reps in {**replayed, **live}.items() if "SALE" in name}
    if shares:  # no SALE method ran: nothing moves between tiers
        bench.plot_shares(shares, bench_agents(prices), 20, out / "shares_over_time.png")
    text = (
        "\n\n".join(sections)
        + f"\n\nEvaluation: {' '.join(test_specs)} ({len(test.complete_tasks())} tasks in the "
        f"matrix, {len(test.complete_tasks(plans=True))} with every agent's bid and review, "
        f"{len(test.unchecked & set(test.complete_tasks()))} that print no example to check). "
        f"kNN trained and weights fitted on {' '.join(train_specs)} "
        f"({len(train.complete_tasks())} tasks, {len(train.complete_tasks(plans=True))} with "
        f"bids and reviews). Input/output prices per million tokens (CPU-seconds): "
        f"{price_text(prices)}. Weights: {config.auction.weights.model_dump()}.\n\n"
        + ("![shares over time](shares_over_time.png)\n" if shares else "")
    )
    (out / "README.md").write_text(text)
    return text


def lean_agreement(
    runs: list[list[TaskRun]], test: Matrix, config: Config, prices: Prices, vectors: dict
) -> str:
    """Each live lean run against the replay of its own tasks, in its own order, from the
    matrix: the live marketplace and the benchmark must take the same decisions."""
    from marketplace import bench, lean_method
    from marketplace.lean import Prior, settings_of

    table = config.auction.lean
    priors = {a: Prior(**p.model_dump()) for a, p in table.priors.items()}
    lines = ["Live lean runs against their replay from the matrix (same tasks, same order):", ""]
    for order, live in enumerate(runs):
        tasks = [r.task_id for r in live]
        replayed = lean_method.lean_runs(test, tasks, priors, settings_of(table), prices, vectors)
        lines.append(f"- order {order}: {bench.agreement(live, replayed, prices)}")
    return "\n".join(lines)


def _bench_section(
    title: str,
    methods: dict[str, list[list[TaskRun]]],
    prices: Prices,
    largest: str,
    out: Path,
    prefix: str,
) -> str:
    from marketplace import bench

    table = bench.rows(methods, prices, largest)
    plot = f"{prefix}cost_vs_pass.png"
    bench.plot_cost_vs_pass(table, out / plot)
    tasks = table[0].result.tasks
    return (
        f"### {title} ({tasks} tasks every method ran)\n\n{bench.markdown(table)}\n\n"
        f"![cost vs pass@1]({plot})"
    )


def bench_agents(prices: Prices) -> list[str]:
    return by_price(list(prices), prices)
