"""Topic administration: create the marketplace's topics, and report their size and lag.

Topics are created explicitly, all with the same partition count, because every task-scoped
stream is keyed by task id and one auctioneer must own all of a task's partitions
(co-partitioning). Auto-created topics would get the broker's default count instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from marketplace.shared.config import BrokerConfig
from schemas.topics import Topics


async def ensure_topics(config: BrokerConfig) -> list[str]:
    """Creates whichever of the marketplace's topics are missing; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in Topics(config.topic_prefix).all() if t not in existing]
        if missing:
            # another process may create them between our list and our create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, config.partitions, config.replication_factor) for t in missing]
                )
        return missing
    finally:
        await admin.close()


@dataclass(frozen=True)
class TopicStatus:
    topic: str
    partitions: int
    messages: int  # sum of high-water marks: records ever written, as the broker keeps all
    lag: dict[str, int]  # consumer group (prefix included) → records it has not yet committed


async def topic_status(config: BrokerConfig) -> list[TopicStatus]:
    """Partitions, size and per-group lag of every topic under the prefix.

    Lag is high-water mark minus committed offset. The high-water marks come from a fetch
    response rather than `end_offsets()`, which Tansu answers wrongly.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(config.topic_prefix))
        groups = sorted(
            g for g, _ in await admin.list_consumer_groups() if g.startswith(config.topic_prefix)
        )
    finally:
        await admin.close()
    highwater = await highwater_marks(config.bootstrap, topics)
    committed = {g: await committed_offsets(config.bootstrap, g, list(highwater)) for g in groups}
    status = []
    for topic in topics:
        parts = [tp for tp in highwater if tp.topic == topic]
        lag = {
            group: sum(highwater[tp] - offsets.get(tp, 0) for tp in parts)
            for group, offsets in committed.items()
            if any(tp in offsets for tp in parts)
        }
        status.append(TopicStatus(topic, len(parts), sum(highwater[tp] for tp in parts), lag))
    return status


async def highwater_marks(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=1,
    )
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata that partitions_for_topic reads
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        marks: dict[TopicPartition, int] = {}
        for _ in range(20):  # a few fetch rounds until every partition has reported
            await consumer.getmany(timeout_ms=50, max_records=1)
            marks = {tp: consumer.highwater(tp) for tp in parts}
            if all(mark is not None for mark in marks.values()):
                break
            await asyncio.sleep(0.02)
        return {tp: mark or 0 for tp, mark in marks.items()}
    finally:
        await consumer.stop()


async def committed_offsets(
    bootstrap: str, group: str, parts: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Offsets `group` has committed, read without joining the group (it is not disturbed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        offsets = {tp: await consumer.committed(tp) for tp in parts}
        return {tp: offset for tp, offset in offsets.items() if offset is not None}
    finally:
        await consumer.stop()
