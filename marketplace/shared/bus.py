"""The marketplace's one door to Kafka: publish events, subscribe handlers to streams.

A thin layer over a FastStream KafkaBroker that adds what every service needs the same way:
topic names from the prefix, task/agent ids as record keys, and dead-lettering. A record that
is not a valid event for its topic, or whose handler fails, is published to `dlq` whole with
the reason, and the consumer goes on with the next record. Offsets are committed after the
handler returns, so a crash means redelivery (handlers are idempotent), never loss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from marketplace.shared.admin import ensure_topics
from marketplace.shared.config import BrokerConfig
from schemas.codec import EventDecodeError, decode, encode
from schemas.events import MAX_REASON, DeadLetter, Event
from schemas.topics import STREAMS, Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where a delivered event was read: its position is its identity in the log."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


Handler = Callable[[Event, Source], Awaitable[None]]


class PartitionOwner(Protocol):
    """A service that keeps state per partition and must know when ownership changes."""

    def assigned(self, partitions: set[TopicPartition]) -> None: ...

    async def revoked(self, partitions: set[TopicPartition]) -> None: ...


async def _raw_body(message: Any) -> bytes:
    """FastStream decoder that hands over the bytes untouched; we decode with the schemas."""
    return message.body


class Bus:
    def __init__(self, config: BrokerConfig, producer: str) -> None:
        self.config = config
        self.producer = producer
        self.topics = Topics(config.topic_prefix)
        self.broker = KafkaBroker(
            config.bootstrap,
            client_id=producer,
            logger=logging.getLogger("sale.kafka"),
            log_level=logging.DEBUG,  # a line per message is for debugging, not for the log
            enable_idempotence=False,  # Tansu has no idempotent producer; consumers dedupe
        )
        self._stream_of_topic = {self.topics.prefix + s: s for s in STREAMS}

    async def publish(self, event: Event) -> None:
        """Publishes and waits for the broker's acknowledgement."""
        await self.send(event, confirm=True)

    async def send(self, event: Event, confirm: bool = False) -> asyncio.Future | None:
        """Publishes; without `confirm`, returns a future to await before relying on delivery.

        Records of one key keep their order. Lets a service pipeline many decisions and
        confirm them together, e.g. before committing the offsets they answer.
        """
        return await self.broker.publish(
            encode(event),
            topic=self.topics.for_event(event),
            key=event.key.encode(),
            headers={"type": event.type},
            no_confirm=not confirm,
        )

    def subscribe(
        self, streams: Iterable[str], group: str, handler: Handler, *, from_start: bool = True
    ) -> None:
        """Calls `handler` for each valid event on the streams, in consumer group `group`.

        Group names carry the topic prefix, like topics: deployments (and tests) that share a
        cluster under different prefixes never share a group.

        `from_start`: a new group reads each topic from its first record; otherwise from now.
        """

        group = self.group(group)

        async def on_record(body: bytes, message: KafkaMessage) -> None:
            record = message.raw_message
            source = Source(record.topic, record.partition, record.offset, record.key)
            event = await self.receive(body, source, group)
            if event is None:
                return
            try:
                await handler(event, source)
            except Exception as exc:
                log.exception("%s failed on %s at %s", group, event.type, source)
                await self.dead_letter(source, body, group, f"handler failed: {exc!r}")

        self.broker.subscriber(
            *(self.topics.prefix + s for s in streams),
            group_id=group,
            auto_offset_reset="earliest" if from_start else "latest",
            ack_policy=AckPolicy.ACK,
            decoder=_raw_body,
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            max_poll_interval_ms=self.config.max_poll_interval_ms,
        )(on_record)

    def group(self, name: str) -> str:
        return self.topics.prefix + name

    async def receive(self, body: bytes, source: Source, group: str) -> Event | None:
        """The event in a record, or None after dead-lettering a record that holds none."""
        try:
            return self._decode(body, source.topic)
        except EventDecodeError as exc:
            await self.dead_letter(source, body, group, str(exc))
            return None

    def _decode(self, body: bytes, topic: str) -> Event:
        event = decode(body)
        stream = self._stream_of_topic.get(topic)
        if stream is not None and type(event) not in STREAMS[stream]:
            raise EventDecodeError(f"type: {event.type} does not belong on the {stream} stream")
        return event

    async def dead_letter(self, source: Source, body: bytes, group: str, error: str) -> None:
        log.warning("dead letter from %s at %s: %s", group, source, error)
        if source.topic == self.topics.dlq:
            return  # a dead letter about a dead letter could loop forever; the log keeps it
        await self.publish(
            DeadLetter(
                producer=self.producer,
                source_topic=source.topic,
                partition=source.partition,
                offset=source.offset,
                consumer_group=group,
                raw_key=source.key,
                raw_value=body,
                error=error[:MAX_REASON],
            )
        )

    async def group_consumer(
        self, streams: Iterable[str], group: str, owner: PartitionOwner | None = None
    ) -> AIOKafkaConsumer:
        """A started consumer for services that commit by hand (auctioneer, recorder, verifier).

        Range assignment, not aiokafka's default round-robin: partition p of every stream goes
        to the same member, which is what co-partitioning by task id relies on. `owner` hears
        of partitions assigned and revoked.
        """
        config = self.config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap,
            group_id=self.group(group),
            client_id=self.producer,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
        )
        topics = [self.topics.prefix + s for s in streams]
        consumer.subscribe(topics, listener=_Rebalance(owner) if owner else None)
        await consumer.start()
        return consumer

    async def joined(self, timeout_s: float = 30.0) -> None:
        """Waits until every subscription has its partitions and its starting offsets.

        From then on it hears every new record. A group that starts from "now" resolves "now"
        lazily, so without the position lookups a record published just after joining is lost.
        """
        async with asyncio.timeout(timeout_s):
            while not all(
                sub.consumer is not None and sub.consumer.assignment()
                for sub in self.broker.subscribers
            ):
                await asyncio.sleep(0.02)
            for sub in self.broker.subscribers:
                for tp in sub.consumer.assignment():
                    await sub.consumer.position(tp)

    async def start(self) -> None:
        """Creates any missing topic first: an auto-created one would get the wrong partitions."""
        await ensure_topics(self.config)
        await self.broker.start()

    async def stop_consuming(self) -> None:
        """Stops the subscribers, letting a handler that is running finish (for a while);
        the producer stays up, so a service can still say goodbye."""
        for subscriber in self.broker.subscribers:
            await subscriber.stop()

    async def stop(self) -> None:
        await self.broker.stop()

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def reader(config: BrokerConfig) -> AIOKafkaConsumer:
    """A started consumer of no group that commits nothing: for reading history (replay from
    Kafka, the ingest benchmark), where offsets are chosen by hand."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=config.fetch_max_wait_ms,
    )
    await consumer.start()
    return consumer


async def caught_up(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> bool:
    """Whether the consumer has read, on each partition, all that was there when it last fetched.

    Uses the high-water mark of the fetch responses: Tansu answers `end_offsets()` wrongly.
    """
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: PartitionOwner) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owner.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owner.assigned(set(assigned))
