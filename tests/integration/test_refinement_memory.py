"""The whole loop of the memory: an auction is recorded, and the next similar task's refinement
invitation carries it as an example — real broker, real Postgres, real embedding model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace.log.memory import PostgresMemory
from marketplace.shared.config import BrokerConfig
from marketplace.shared.database import create_database, drop_database
from schemas.events import CodingInputs, RefinementCalled, TaskPosted
from schemas.topics import Topics
from tests.integration.test_auctioneer import Market, make_config
from tests.integration.test_recorder import recording

SCORES = {"large": 4.0, "small:0": 1.0, "small:1": 5.0}  # large leads, small's refinement wins


def coding_task(task_id: str, prompt: str) -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt=prompt,
        inputs=CodingInputs(entry_point="f"),
    )


@pytest.fixture
async def database(database_server: str) -> AsyncIterator[str]:
    url = await create_database(database_server, prefix="sale_memory")
    yield url
    await drop_database(database_server, url)


async def closed_in_log(database: str, task_id: str) -> bool:
    conn = await asyncpg.connect(database)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM auctions WHERE task_id = $1 AND closed_at IS NOT NULL",
                task_id,
            )
        )
    finally:
        await conn.close()


async def test_a_recorded_auction_becomes_an_example_for_the_next_similar_task(
    broker_config: BrokerConfig, topics: Topics, database: str
) -> None:
    memory = PostgresMemory(database, use_pgvector=False)
    async with recording(broker_config, database), Market(make_config(broker_config)) as market:
        await market.agent(
            ScriptedAgent("small", price=0.05, scores=SCORES, refined_plan_tokens=60)
        )
        await market.agent(ScriptedAgent("large", price=0.36, scores=SCORES))
        await market.auctioneer(memory=memory)
        first = coding_task("sort-1", "Sort a list of integers in ascending order.")
        await market.post(first)
        await market.closed(first.task_id)
        [cold] = market.about(first.task_id, RefinementCalled)
        assert cold.invites[0].examples == []  # nothing in memory yet
        for _ in range(200):
            if await closed_in_log(database, first.task_id):
                break
            await asyncio.sleep(0.1)
        second = coding_task("sort-2", "Sort a list of numbers from smallest to largest.")
        await market.post(second)
        await market.closed(second.task_id)
    [warm] = market.about(second.task_id, RefinementCalled)
    [invite] = warm.invites
    assert invite.agent_id == "small"
    [example] = invite.examples
    assert example.task_id == first.task_id and example.similarity > 0.5
    assert "small" in (example.losing_agent, example.winning_agent)
