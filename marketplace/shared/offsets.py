"""Where the streams and their readers stand: high-water marks, committed offsets, and the
size and per-group lag of every topic (`sale topics`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from marketplace.shared.bus import from_start, new_consumer
from marketplace.shared.config import BrokerConfig
from marketplace.shared.kafka_auth import client_options


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
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, **client_options(config))
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
    """Each partition's high-water mark, from a fetch response (Tansu answers `end_offsets()`
    wrongly)."""
    consumer = new_consumer(bootstrap, fetch_max_wait_ms=10, max_partition_fetch_bytes=1)
    await consumer.start()
    try:
        parts = await from_start(consumer, topics)
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
    consumer = new_consumer(bootstrap, group_id=group)
    await consumer.start()
    try:
        offsets = {tp: await consumer.committed(tp) for tp in parts}
        return {tp: offset for tp, offset in offsets.items() if offset is not None}
    finally:
        await consumer.stop()
