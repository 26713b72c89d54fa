"""One spend rule: `sale audit`, `sale result` and the `spend` table book each part alike.

A recorded auction of each mechanism — the paper's (bids, jury, refinement, execution) and the
lean one (drafts, the winner's draft being the execution) — runs through the real auctioneer
and scripted agents on the real broker, the recorder keeping the log in Postgres. Then the cost
of each part as `sale audit` prints it, as the task's `Outcome` (`sale result`) carries it and
as the recorder's `spend` projection holds it must be the same, part by part, not just in total.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace.log import audit
from marketplace.log.outcomes import fold
from marketplace.shared.config import BrokerConfig, Config
from marketplace.shared.database import create_database, drop_database
from schemas.events import TaskOutcome, TaskPosted, TaskResult
from schemas.topics import Topics
from tests.integration.test_auctioneer import Market, make_config, task
from tests.integration.test_lean_auctioneer import coding_task, lean_config
from tests.integration.test_recorder import recording, wait_for_lag_zero

pytestmark = pytest.mark.integration

PARTS = ("bids", "refinement", "jury", "execution")  # the `spend` table's parts
SCORES = {"large": 4.0, "small:0": 1.0, "small:1": 5.0}  # large provisional, small refines


@dataclass(frozen=True)
class Spent:
    """One part's spend as every reader can print it: calls, tokens, and the cost."""

    requests: int
    tokens: int
    cost: str  # as `sale audit` prints it (6 significant digits)


@pytest.fixture
async def database(database_server: str) -> AsyncIterator[str]:
    url = await create_database(database_server, prefix="sale_spend")
    yield url
    await drop_database(database_server, url)


def paper(broker: BrokerConfig) -> tuple[Config, list[ScriptedAgent], TaskPosted]:
    """Long windows: a loaded machine must not turn the refined auction into an awarded one."""
    agents = [
        ScriptedAgent("small", price=0.05, scores=SCORES, refined_plan_tokens=60),
        ScriptedAgent("large", price=0.36, scores=SCORES),
    ]
    return make_config(broker, window_s=20.0), agents, task()


def lean(broker: BrokerConfig) -> tuple[Config, list[ScriptedAgent], TaskPosted]:
    small = ScriptedAgent("small", price=0.05, mechanism="lean")
    small.draft_passes = False  # small's draft fails its examples: large is called and wins
    agents = [small, ScriptedAgent("large", price=0.36, mechanism="lean")]
    return lean_config(broker), agents, coding_task("lean-spend", "Parse a date in any format.")


async def record(broker_config: BrokerConfig, topics: Topics, database: str, mechanism: str) -> str:
    """One auction of `mechanism` with its result and outcome, recorded; its task id."""
    config, agents, posted = (paper if mechanism == "paper" else lean)(broker_config)
    async with recording(broker_config, database) as recorder:
        async with Market(config) as market:
            for agent in agents:
                await market.agent(agent)
            await market.auctioneer()
            await market.post(posted)
            await market.closed(posted.task_id)
            await market.watch.wait_until(lambda es: market.about(posted.task_id, TaskResult))
            outcome = TaskOutcome(
                producer="verifier", task_id=posted.task_id, passed=True, score=1.0
            )
            await market.client.publish(outcome)
        await wait_for_lag_zero(broker_config, topics, lambda: not recorder.done())
    return posted.task_id


def audited(story: str) -> dict[str, Spent]:
    """The cost table of `sale audit`'s story: `part requests tokens cost` per line."""
    table = story.split("\ncost\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    rows = {line.split()[0]: line.split()[1:] for line in table}
    return {part: Spent(int(r), int(t), c) for part, (r, t, c) in rows.items() if part != "total"}


async def projected(database: str, task_id: str) -> dict[str, Spent]:
    """The `spend` table's sum per part (a part with no row spent nothing)."""
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT part, sum(requests) AS r, sum(prompt_tokens + completion_tokens) AS t, "
            "sum(cost) AS c FROM spend WHERE task_id = $1 GROUP BY part",
            task_id,
        )
    finally:
        await conn.close()
    held = {r["part"]: Spent(int(r["r"]), int(r["t"]), f"{r['c']:.6g}") for r in rows}
    return {part: held.get(part, Spent(0, 0, f"{0.0:.6g}")) for part in PARTS}


@pytest.mark.parametrize("mechanism", ["paper", "lean"])
async def test_audit_outcome_and_the_spend_table_agree_part_by_part(
    broker_config: BrokerConfig, topics: Topics, database: str, mechanism: str
) -> None:
    task_id = await record(broker_config, topics, database, mechanism)
    stored = await audit.load(database, task_id)
    outcome = fold(task_id, [s.event for s in stored])
    assert outcome is not None and outcome.status == "passed"

    table = await projected(database, task_id)
    story = audited(audit.render(stored))
    assert story == table
    parts = outcome.spend.items()
    result = {part: Spent(u.requests, u.total_tokens, f"{u.cost:.6g}") for part, u in parts}
    assert result == table
    assert sum(s.requests for s in table.values()) == outcome.usage.requests
    # every part the mechanism spends on is there, so agreement is not agreement on nothing
    spent = {part for part, s in table.items() if s.requests}
    if mechanism == "paper":
        assert spent == {"bids", "jury", "refinement", "execution"}
    else:
        assert spent == {"bids", "execution"}  # small's failing draft; large's winning one
        assert outcome.winner_agent_id == "large"
