"""`sale report`: what the Postgres log says happened, as markdown tables.

Per task: who won and how, what each part of the auction and the execution cost, and whether
the result passed; then the run's totals (pass@1, cost, the auction's share of it, how the work
was shared between agents). The main job prints exactly this at its end, from the same log.

Costs are priced here, per direction, from the tokens the `spend` projection keeps (prompt, of
them held by the backend, generated) and a price table: the caller's (the configuration's), or
else the one the log itself tells (each agent's last heartbeat: its output and input prices; an
agent that never sent one at its bids' price in both directions). The log carries no cached
input price, so without the caller's table held prompt tokens are priced at the input price.
An agent that spent but is not in the caller's table (a foreign agent that joined the market
and won a task) is priced as the log tells, and the report names it as not in the config; one
the log has no price for either is counted at 0, and named so.

A general task (its outcome has no pass or fail: nothing to check it against) is reported in a
section of its own, answered but not graded, and left out of pass@1 and the totals.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from marketplace.core.measures import (
    AUCTION_PARTS,
    MethodResult,
    Prices,
    Spend,
    TaskRun,
    cost,
    summarize,
)
from schemas.events import Price, Usage

# A task counts once its outcome is in: an auction closed by an interrupted run whose winner
# never executed is not a failure of the method, just unfinished. A general task's answer
# (passed NULL) has no pass or fail to count: `_GENERAL` reads those apart.
_FINISHED = """
SELECT a.task_id, a.winner_agent_id, a.reason, o.passed
FROM auctions a JOIN outcomes o ON o.task_id = a.task_id
WHERE a.closed_at IS NOT NULL AND o.passed IS {} NULL
  AND ($1::text[] IS NULL OR a.task_id = ANY($1::text[]))
ORDER BY a.posted_at, a.task_id
"""
_TASKS = _FINISHED.format("NOT")
_GENERAL = _FINISHED.format("")
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
UNPRICED = Price(input=0.0, output=0.0)  # an agent that spent and whose price nobody told


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
    """Every finished graded task (or those of `task_ids`) as a `TaskRun`, in posting order;
    the agents' prices (`prices`, with the log's for any agent that spent and is not in them;
    else as the log tells them); and each task's decision reason."""
    graded, _, prices, reasons = await _read(conn, task_ids, prices)
    return graded, prices, reasons


async def _read(
    conn: asyncpg.Connection, task_ids: Sequence[str] | None, prices: Prices | None
) -> tuple[list[TaskRun], list[TaskRun], dict[str, Price], dict[str, str]]:
    """The graded runs, the general ones (answered, not graded), every spender's prices and
    each task's decision reason."""
    wanted = list(task_ids) if task_ids is not None else None
    spend: dict[str, list[Spend]] = {}
    for row in await conn.fetch(_SPEND, wanted):
        spend.setdefault(row["task_id"], []).append(_spent(row))
    reasons: dict[str, str] = {}
    graded = await _runs(conn, _TASKS, wanted, spend, reasons)
    general = await _runs(conn, _GENERAL, wanted, spend, reasons)
    told = await log_prices(conn)
    spenders = {s.agent_id for run in (*graded, *general) for s in run.spend}
    priced = dict(prices) if prices is not None else dict(told)
    for agent in sorted(spenders - set(priced)):  # not in the caller's table: as the log tells
        priced[agent] = told.get(agent, UNPRICED)
    return graded, general, priced, reasons


async def _runs(
    conn: asyncpg.Connection,
    query: str,
    wanted: list[str] | None,
    spend: dict[str, list[Spend]],
    reasons: dict[str, str],
) -> list[TaskRun]:
    runs = []
    for row in await conn.fetch(query, wanted):
        runs.append(
            TaskRun(
                task_id=row["task_id"],
                executor=row["winner_agent_id"],
                passed=bool(row["passed"]),
                spend=tuple(spend.get(row["task_id"], ())),
            )
        )
        reasons[row["task_id"]] = row["reason"]
    return runs


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


def task_table(
    runs: Sequence[TaskRun], prices: Prices, reasons: dict[str, str], graded: bool = True
) -> str:
    """One row per task; `graded`: with whether it passed (a general task has no such column)."""
    passed = " passed |" if graded else ""
    lines = [
        f"| task | winner | decision | auction cost | execution cost | total | CPU-s |{passed}",
        "|---|---|---|---:|---:|---:|---:|" + ("---|" if graded else ""),
    ]
    for run in runs:
        auction = cost([s for s in run.spend if s.part in AUCTION_PARTS], prices)
        execution = cost([s for s in run.spend if s.part == "execution"], prices)
        seconds = sum(s.seconds for s in run.spend)
        verdict = f" {'yes' if run.passed else 'no'} |" if graded else ""
        lines.append(
            f"| {run.task_id} | {run.executor or '-'} | {reasons.get(run.task_id, '')} "
            f"| {auction:.6f} | {execution:.6f} | {auction + execution:.6f} | {seconds:.1f} "
            f"|{verdict}"
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
    `prices` (default: as the log tells them; an agent not in them, as the log tells it)."""
    graded, general, used, reasons = await _read(conn, task_ids, prices)
    if not graded and not general:
        return "No finished tasks in the log yet."
    listed = prices if prices is not None else used
    sections = []
    if graded:
        result = summarize("SALE (live)", graded, used, largest_agent(listed))
        sections += [task_table(graded, used, reasons), totals_table(result)]
    if general:
        sections.append(general_section(general, used, reasons))
    price_list = price_text(dict(sorted(used.items())))
    sections.append(
        f"Costs at the agents' input/output prices per million tokens ({price_list}); CPU-s is "
        "the measured compute of every model call the tasks made."
    )
    if prices is not None and (unlisted := sorted(set(used) - set(prices))):
        sections.append(unlisted_note(unlisted, used))
    return "\n\n".join(sections)


def general_section(runs: Sequence[TaskRun], prices: Prices, reasons: dict[str, str]) -> str:
    """The general tasks: answered, not graded (nothing checks a general answer), so left out
    of pass@1 and the totals; their cost said apart."""
    spent = [s for run in runs for s in run.spend]
    count = f"{len(runs)} general task{'' if len(runs) == 1 else 's'}"
    return (
        f"{count}, answered and not graded (nothing to check a general answer against), so left "
        f"out of pass@1 and the totals; {cost(spent, prices):.6f} spent, "
        f"{sum(s.seconds for s in spent):.1f} CPU-s:\n\n"
        f"{task_table(runs, prices, reasons, graded=False)}"
    )


def unlisted_note(agents: Sequence[str], prices: Prices) -> str:
    """Names the agents that spent and are not in the config, and what they were priced at."""
    said = [f"{agent} ({_told_price(prices[agent])})" for agent in agents]
    return (
        "Not in the config's [[agents]], priced as the log tells (their last heartbeat, else "
        f"their bid): {', '.join(said)}."
    )


def _told_price(price: Price) -> str:
    if price is UNPRICED:
        return "no price in the log: counted at 0"
    return f"at {price.input:g}/{price.output:g}"
