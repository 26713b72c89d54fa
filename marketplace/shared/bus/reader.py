"""Reading the log outside any consumer group: history, the roster, a client's answers.

A reader joins no group and commits nothing: where it reads is chosen by hand (`from_start`,
or `seek`), and `caught_up` says when it has read what was there. Records come as aiokafka
gives them; the caller decodes and checks them (`Bus.receive`, or `signing` for a reader that
must not dead-letter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from marketplace.shared import signing
from marketplace.shared.config import BrokerConfig
from marketplace.shared.kafka_auth import client_options
from schemas.codec import EventDecodeError, decode
from schemas.events import Event

log = logging.getLogger(__name__)


def new_consumer(bootstrap: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """The one place a Kafka consumer is constructed. Nothing is committed unless a caller
    commits by hand: the services commit what they have safely done, the readers nothing."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, enable_auto_commit=False, **options
    )


async def reader(config: BrokerConfig, **options: Any) -> AIOKafkaConsumer:
    """A started consumer of no group that commits nothing: for reading history (replay from
    Kafka, the roster, an agent's recall, the benchmarks), where offsets are chosen by hand.
    `options`: more of aiokafka's consumer settings (e.g. `auto_offset_reset`)."""
    consumer = new_consumer(
        config.bootstrap,
        fetch_max_wait_ms=config.fetch_max_wait_ms,
        **client_options(config),
        **options,
    )
    try:
        await consumer.start()
    except BaseException:  # cancelled on the way up (a stop): nothing left open
        await asyncio.shield(consumer.stop())
        raise
    return consumer


async def from_start(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Assigns every partition of `topics` to a reader, positioned at the first record."""
    parts = await partitions_of(consumer, topics)
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    return parts


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of `topics`, as the cluster's metadata has them."""
    await consumer.topics()  # loads the cluster metadata that partitions_for_topic reads
    return [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]


async def caught_up(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> bool:
    """Whether the consumer has read, on each partition, all that was there when it last fetched.

    Uses the high-water mark of the fetch responses: Tansu answers `end_offsets()` wrongly.
    """
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


async def read_back(
    config: BrokerConfig, tp: TopicPartition, end: int, count: int, timeout_s: float = 30.0
) -> list[tuple[Event, dict[str, bytes]]]:
    """The events (with their signature headers, for the caller to check) of the `count`
    records before offset `end` of one partition, read outside any group: what a service
    that resumed at a committed offset must still know of what came before (decided tasks).
    Undecodable records are left out: they were dead-lettered when first read. Reading
    stops after `timeout_s`, saying so, with what it has."""
    consumer = await reader(config)
    found: list[tuple[Event, dict[str, bytes]]] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, max(0, end - count))
        async with asyncio.timeout(timeout_s):
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                    if record.offset >= end:
                        continue
                    with contextlib.suppress(EventDecodeError):
                        event = decode(record.value or b"", config.max_record_bytes)
                        found.append((event, signing.header_map(record.headers)))
    except TimeoutError:
        log.warning("%s: read back for %ss only", tp, timeout_s)
    finally:
        await consumer.stop()
    return found
