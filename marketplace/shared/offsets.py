"""Where the streams and their readers stand: high-water marks, committed offsets, and the
size and per-group lag of every topic (`sale topics`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from marketplace.shared.bus import from_start, new_consumer, partitions_of
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

    Lag is high-water mark minus committed offset. The committed offsets are read first and
    the high-water marks after them: read the other way round, a group that commits while its
    turn comes (a heartbeat read meanwhile) is past the mark read before, and its lag comes out
    negative (issue 26 saw -1 in /metrics). A mark only grows, so read last it is at least every
    offset committed before it. The high-water marks come from a fetch response rather than
    `end_offsets()`, which Tansu answers wrongly; a partition whose mark did not come counts no
    lag rather than a negative one.
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
    every = await partitions(config.bootstrap, topics)
    committed = {g: await committed_offsets(config.bootstrap, g, every) for g in groups}
    highwater = await highwater_marks(config.bootstrap, topics)  # after: see above
    status = []
    for topic in topics:
        parts = [tp for tp in highwater if tp.topic == topic]
        lag = {
            group: sum(max(0, highwater[tp] - offsets.get(tp, 0)) for tp in parts)
            for group, offsets in committed.items()
            if any(tp in offsets for tp in parts)
        }
        status.append(TopicStatus(topic, len(parts), sum(highwater[tp] for tp in parts), lag))
    return status


async def partitions(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    """Every partition of `topics`, from the cluster's metadata."""
    consumer = new_consumer(bootstrap)
    await consumer.start()
    try:
        return await partitions_of(consumer, topics)
    finally:
        await consumer.stop()


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
