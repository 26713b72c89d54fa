"""Topic administration: create the marketplace's topics (their size and lag: `offsets`), and
notice when the broker has lost them.

Topics are created explicitly, the streams of record all with the same partition count, because
every task-scoped stream is keyed by task id and one auctioneer must own all of a task's
partitions (co-partitioning); the inbox with its own (`inbox_partitions`: it is keyed by agent
id, and read one partition per agent, docs/delivery.md). Auto-created topics would get the
broker's default count instead.

A broker that comes back empty (Tansu keeps its log in memory; a Kafka cluster whose data was
wiped) has lost every open auction, every award not yet delivered and every committed offset.
Nothing a service holds can bring them back, and going on would let them vanish unnoticed, so
the services that watch for it (`watch_broker`) stop with one message instead (`BrokerLost`).
An unreachable broker is only waited for: it may come back with its log.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from marketplace.shared.config import BrokerConfig
from marketplace.shared.kafka_auth import client_options
from schemas.topics import Topics

BROKER_CHECK_S = 5.0
BROKER_LOST_EXIT = 3  # the exit code of a service that stopped because the broker lost its log


class BrokerLost(RuntimeError):
    """The broker answers, but without the marketplace's topics."""


class BrokerUnreachable(RuntimeError):
    """Nothing answers at the bootstrap address (for now)."""


async def ensure_topics(config: BrokerConfig) -> list[str]:
    """Creates whichever of the marketplace's topics are missing; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, **client_options(config))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        topics = Topics(config.topic_prefix)
        missing = [t for t in topics.every() if t not in existing]
        if missing:
            # another process may create them between our list and our create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(t, _partitions(config, topics, t), config.replication_factor)
                        for t in missing
                    ]
                )
        return missing
    finally:
        await admin.close()


async def missing_topics(config: BrokerConfig, timeout_s: float = BROKER_CHECK_S) -> list[str]:
    """The marketplace's topics the broker does not have; `BrokerUnreachable` if it does not
    answer within `timeout_s`."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=config.bootstrap, request_timeout_ms=2000, **client_options(config)
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            existing = set(await admin.list_topics())
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BrokerUnreachable(f"no broker answers at {config.bootstrap}: {exc!r}") from None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return [t for t in Topics(config.topic_prefix).every() if t not in existing]


def _partitions(config: BrokerConfig, topics: Topics, topic: str) -> int:
    return config.inbox_partitions if topic == topics.inbox else config.partitions


def lost_message(config: BrokerConfig, missing: list[str]) -> str:
    return (
        f"the broker at {config.bootstrap} has lost {len(missing)} of the marketplace's topics "
        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): it came back empty, "
        "and with them every open auction, undelivered award and committed offset is gone. "
        "Stopping rather than carrying on as if nothing was lost; start again to begin on the "
        "empty broker (the Postgres log keeps what was recorded)."
    )


async def watch_broker(
    config: BrokerConfig, interval_s: float = BROKER_CHECK_S, seen: bool = True
) -> None:
    """Checks every `interval_s` that the broker still has the topics; raises `BrokerLost`
    when it answers without them. Never returns otherwise.

    `seen=False` when the topics may not have been created yet (the watch starts before the
    service's bus, and the recorder may wait for Postgres first): then they count as lost only
    once a check has found them all."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            missing = await missing_topics(config)
        except BrokerUnreachable:
            continue
        if not missing:
            seen = True
        elif seen:
            raise BrokerLost(lost_message(config, missing))
