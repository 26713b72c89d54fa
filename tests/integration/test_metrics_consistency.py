"""`/metrics` tells figures that agree (issue 26: a consumer lag of -1.0, and more auctions closed
than opened), on the real broker and the real Postgres log.

- Lag: groups that commit as records come, as the services do with heartbeats, while the lag is
  probed: read the high-water marks first and the committed offsets after, a group that
  committed meanwhile came out behind by a negative count.
- Auctions: a task refused over its budget closes without opening; counted among the auctions
  closed, they outnumbered those opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx2
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from marketplace import Client, Refused
from marketplace.services.front_door.app import create_app
from marketplace.shared.bus import new_consumer
from marketplace.shared.config import BrokerConfig, Config
from marketplace.shared.offsets import committed_offsets, partitions, topic_status
from schemas.topics import Topics
from tests.integration.test_client import agents, marketplace, with_database
from tests.integration.test_dashboard import until
from tests.integration.test_lean_auctioneer import lean_config
from tests.integration.test_recorder import recording

pytestmark = pytest.mark.integration
GROUPS = 6
PROBES = 4


@contextlib.asynccontextmanager
async def busy(broker: BrokerConfig, topic: str) -> AsyncIterator[list[str]]:
    """A record every 50 ms on `topic`, and `GROUPS` groups each committing what it reads as
    soon as it reads it; yields the groups once each has committed."""
    stop = asyncio.Event()
    groups = [f"{broker.topic_prefix}busy{n}" for n in range(GROUPS)]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            while not stop.is_set():
                await producer.send_and_wait(topic, b"beat", key=b"agent")
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()

    async def consume(group: str) -> None:
        consumer = new_consumer(
            broker.bootstrap,
            topic,
            group_id=group,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,  # each record read as it comes, as the services read
        )
        await consumer.start()
        try:
            while not stop.is_set():
                if await consumer.getmany(timeout_ms=10):
                    await consumer.commit()
        finally:
            await consumer.stop()

    running = [asyncio.create_task(produce()), *(asyncio.create_task(consume(g)) for g in groups)]
    try:
        every = await partitions(broker.bootstrap, [topic])
        async with asyncio.timeout(60):  # the groups' first join
            for group in groups:
                while not await committed_offsets(broker.bootstrap, group, every):
                    await asyncio.sleep(0.2)
        yield groups
    finally:
        stop.set()
        await asyncio.gather(*running)


async def test_consumer_lag_is_never_negative_while_groups_commit(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    seen: list[dict[str, int]] = []
    async with busy(broker_config, topics.agents) as groups:
        for _ in range(PROBES):
            [agents_topic] = [
                s for s in await topic_status(broker_config) if s.topic == topics.agents
            ]
            seen.append(agents_topic.lag)
    assert all(set(groups) <= set(lag) for lag in seen), seen
    assert all(behind >= 0 for lag in seen for behind in lag.values()), seen


def scraped(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def metrics(config: Config) -> dict[tuple[str, tuple], float]:
    transport = httpx2.ASGITransport(app=create_app(None, config, env={}))
    async with httpx2.AsyncClient(transport=transport, base_url="http://door") as api:
        response = await api.get("/metrics")
    assert response.status_code == 200
    return scraped(response.text)


def total(samples: dict, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


async def test_a_refused_task_is_not_an_auction_closed_and_the_counts_agree(
    broker_config: BrokerConfig, topics: Topics, fresh_database: str
) -> None:
    config = with_database(lean_config(broker_config), fresh_database)
    async with (
        recording(broker_config, fresh_database),
        marketplace(config, *agents()),
        Client(config) as client,
    ):
        answered = await client.ask("Name a prime.", budget=1.0, timeout_s=60)
        with pytest.raises(Refused):  # less than the cheapest agent's expected cost
            await client.ask("And another.", budget=1e-9, timeout_s=60)
        await until("SELECT count(*) FROM auctions WHERE closed_at IS NOT NULL", 2, fresh_database)
    assert answered.status == "answered"
    samples = await metrics(config)
    assert samples[("sale_log_up", ())] == 1
    assert samples[("sale_auctions_opened_total", ())] == 1
    assert samples[("sale_auctions_closed_total", (("reason", "awarded"),))] == 1
    assert samples[("sale_tasks_refused_total", (("reason", "over_budget"),))] == 1
    assert ("sale_auctions_closed_total", (("reason", "over_budget"),)) not in samples
    opened = samples[("sale_auctions_opened_total", ())]
    closed = total(samples, "sale_auctions_closed_total")
    assert opened == closed + samples[("sale_auctions_open", ())]
    assert samples[("sale_broker_up", ())] == 1
    lags = [v for (name, _), v in samples.items() if name == "sale_consumer_lag"]
    assert lags and min(lags) >= 0
