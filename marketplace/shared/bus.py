"""The marketplace's one door to Kafka: publish events, subscribe handlers to streams.

A thin layer over a FastStream KafkaBroker that adds what every service needs the same way:
topic names from the prefix, task/agent ids as record keys, the record size cap, and
dead-lettering. A record that is not a valid event for its topic (or is over the cap), or whose
handler fails, is published to `dlq` as a bounded excerpt with its size, digest and reason, and
the consumer goes on with the next record; if even that cannot be published, it is logged and
the consumer still goes on: one record never stops a consumer. Offsets are committed after the
handler returns, so a crash means redelivery (handlers are idempotent), never loss; they are
committed off the consumer's path (`Committer`), in batches, at most `COMMIT_INTERVAL_S` behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from marketplace.shared import signing
from marketplace.shared.admin import ensure_topics
from marketplace.shared.config import BrokerConfig, ConfigError
from marketplace.shared.kafka_auth import client_options, faststream_security
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
    headers: tuple[tuple[str, bytes], ...] = ()  # the signature travels here (shared.signing)


Handler = Callable[[Event, Source], Awaitable[None]]

# `[broker] trace`: each record published carries, in this header, when it was sent and the
# timings of the record it answers (`Stamp`), so one auction can be followed hop by hop
# (`sale loadtest --trace`, marketplace.performance.trace).
# Off by default: it costs bytes per record.
TRACE_HEADER = "sale-trace"
Stamp = dict[str, Any]
_answering: ContextVar[Stamp | None] = ContextVar("sale_answering", default=None)


def stamp_of(source: Source, free: float, fetched: float, commit_s: float) -> Stamp:
    """What a consumer knows of a record it answers: where it was read, since when the consumer
    was free to read it (after its previous record and commit), when it had it, and how long
    the commit before that took; all by `time.time()`, comparable across local processes."""
    cause = [source.topic, source.partition, source.offset]
    return {"cause": cause, "free": free, "fetched": fetched, "commit": commit_s}


class PartitionOwner(Protocol):
    """A service that keeps state per partition: it must commit and forget a partition taken
    from it."""

    async def revoked(self, partitions: set[TopicPartition]) -> None: ...


async def _as_received(message: Any) -> tuple[bytes, Any]:
    """FastStream decoder that hands over the bytes untouched (we decode with the schemas) and
    the record they came in. A handler taking FastStream's message as an argument instead would
    have it injected through a worker thread, several thread hops per record."""
    return message.body, message.raw_message


class Bus:
    """`trust`: the keys this process signs with and checks against (default: the process's,
    `signing.install`); with signatures required, a producer without a key fails here."""

    def __init__(
        self, config: BrokerConfig, producer: str, trust: signing.Trust | None = None
    ) -> None:
        self.config = config
        self.producer = producer
        self.trust = trust or signing.current()
        self.signer = self.trust.signer(producer)
        if self.signer is None and self.trust.require:
            raise ConfigError(
                f"[security].key_dir: no private key for {producer!r} "
                f"(make one with `sale keys new --principal {producer} --role ...`)"
            )
        self.topics = Topics(config.topic_prefix)
        self.broker = KafkaBroker(
            config.bootstrap,
            client_id=producer,
            logger=logging.getLogger("sale.kafka"),
            log_level=logging.DEBUG,  # a line per message is for debugging, not for the log
            enable_idempotence=False,  # Tansu has no idempotent producer; consumers dedupe
            security=faststream_security(config),
        )
        self._stream_of_topic = {self.topics.prefix + s: s for s in STREAMS}
        self._subscriptions: list[_Subscription] = []
        self._unconfirmed: set[asyncio.Future] = set()

    async def publish(self, event: Event) -> None:
        """Publishes and waits for the broker's acknowledgement."""
        await self.send(event, confirm=True)

    async def send(
        self, event: Event, confirm: bool = False, cause: Stamp | None = None
    ) -> asyncio.Future | None:
        """Publishes; without `confirm`, returns a future to await before relying on delivery.

        Records of one key keep their order. Lets a service pipeline many decisions and
        confirm them together, e.g. before committing the offsets they answer. `cause`: when
        tracing, the stamp of the record this one answers (default: the one being handled).
        """
        sent = await self.broker.publish(
            encode(event, self.config.max_record_bytes),
            topic=self.topics.for_event(event),
            key=event.key.encode(),
            headers=self._headers(event, cause),
            no_confirm=not confirm,
        )
        if not confirm and isinstance(sent, asyncio.Future) and not sent.done():
            self._unconfirmed.add(sent)
            sent.add_done_callback(self._unconfirmed.discard)
        return sent

    async def confirmed(self) -> None:
        """Waits until every record sent so far is acknowledged (one that failed raises)."""
        await asyncio.gather(*self.unconfirmed())

    def unconfirmed(self) -> list[asyncio.Future]:
        """The records sent without `confirm` that the broker has not acknowledged yet: a
        consumer commits past what caused them only once they are (`Committer`)."""
        return list(self._unconfirmed)

    def _headers(self, event: Event, cause: Stamp | None = None) -> dict[str, str]:
        signed = self.signer.headers(event) if self.signer is not None else {}
        headers = {"type": event.type, **signed}
        if self.config.trace:
            stamp = {**(cause or _answering.get() or {}), "sent": time.time(), "by": self.producer}
            headers[TRACE_HEADER] = json.dumps(stamp)
        return headers

    def subscribe(
        self, streams: Iterable[str], group: str, handler: Handler, *, from_start: bool = True
    ) -> None:
        """Calls `handler` for each valid event on the streams, in consumer group `group`.

        Group names carry the topic prefix, like topics: deployments (and tests) that share a
        cluster under different prefixes never share a group.

        `from_start`: a new group reads each topic from its first record; otherwise from now.
        """

        group = self.group(group)
        subscription = _Subscription(self, group)

        async def on_record(received: Any) -> None:
            fetched = time.time()
            body, record = received
            if not subscription.in_order(record):
                return
            source = _source(record)
            subscription.idle.clear()
            try:
                event = await self.receive(body, source, group)
                if event is not None:
                    cause = subscription.stamp(source, fetched)
                    await self._handle(handler, event, source, body, group, cause)
                subscription.handled(record)
            finally:
                subscription.idle.set()

        subscription.subscriber = self.broker.subscriber(
            *(self.topics.prefix + s for s in streams),
            group_id=group,
            auto_offset_reset="earliest" if from_start else "latest",
            ack_policy=AckPolicy.MANUAL,
            decoder=_as_received,
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            max_poll_interval_ms=self.config.max_poll_interval_ms,
            listener=_SubscriptionRebalance(subscription),
        )
        subscription.subscriber(on_record)
        self._subscriptions.append(subscription)

    async def _handle(
        self, handler: Handler, event: Event, source: Source, body: bytes, group: str, cause: Stamp
    ) -> None:
        """Calls the handler with `cause` as the record answered; one that fails dead-letters
        the record."""
        answering = _answering.set(cause)
        try:
            await handler(event, source)
        except Exception as exc:
            log.exception("%s failed on %s at %s", group, event.type, source)
            await self.dead_letter(source, body, group, f"handler failed: {exc!r}")
        finally:
            _answering.reset(answering)

    def group(self, name: str) -> str:
        return self.topics.prefix + name

    async def receive(self, body: bytes | None, source: Source, group: str) -> Event | None:
        """The event in a record, or None after dead-lettering a record that holds none, or
        one its signature does not vouch for (`signing`: unsigned, unknown key, mis-signed, or
        a type or identity its key may not produce).

        Never raises: whatever is wrong with the record is its dead letter's reason."""
        return (await self.receive_many([(body, source)], group))[0]

    async def receive_many(
        self, records: Sequence[tuple[bytes | None, Source]], group: str
    ) -> list[Event | None]:
        """`receive` of each record of a fetch, in order. The signatures of a large batch are
        checked on every core while the event loop runs on (`signing.Keyring.check_many`)."""
        read = [self._read(body or b"", source, group) for body, source in records]
        signed = [
            i
            for i, (event, _) in enumerate(read)
            if event is not None and records[i][1].topic != self.topics.dlq
        ]
        items = [(read[i][0], signing.header_map(records[i][1].headers)) for i in signed]
        refusals = await self.trust.check_many(items)
        for i, refused in zip(signed, refusals, strict=True):
            if refused is not None:
                read[i] = (None, refused)
        received: list[Event | None] = []
        for (body, source), (event, reason) in zip(records, read, strict=True):
            if event is None:
                await self.dead_letter(source, body or b"", group, reason)
            received.append(event)
        return received

    def _read(self, body: bytes, source: Source, group: str) -> tuple[Event | None, str]:
        """The event in a record's bytes, or None and why not."""
        try:
            return self._decode(body, source.topic), ""
        except EventDecodeError as exc:
            return None, str(exc)
        except Exception as exc:  # a record must not find a way to stop its consumer
            log.exception("%s: unexpected failure reading a record", group)
            return None, f"could not be read: {exc!r}"

    def _decode(self, body: bytes, topic: str) -> Event:
        event = decode(body, self.config.max_record_bytes)
        stream = self._stream_of_topic.get(topic)
        if stream is not None and type(event) not in STREAMS[stream]:
            raise EventDecodeError(f"type: {event.type} does not belong on the {stream} stream")
        return event

    async def dead_letter(self, source: Source, body: bytes, group: str, error: str) -> None:
        """Publishes the record's dead letter (a bounded excerpt, its size and digest).

        Never raises: a dead letter that cannot be published is logged, with what identifies
        the record, and the caller goes on to commit past it. Holding the record instead would
        stop the consumer on it for as long as the cause lasts, and every record behind it."""
        error = error[:MAX_REASON]
        where = f"{group} at {source.topic}[{source.partition}]@{source.offset}, {len(body):,} B"
        log.warning("dead letter from %s: %s", where, error)
        if source.topic == self.topics.dlq:
            return  # a dead letter about a dead letter could loop forever; the log keeps it
        try:
            letter = DeadLetter.of(
                body,
                source.key,
                error,
                excerpt=self.config.dead_letter_excerpt_bytes,
                producer=self.producer,
                source_topic=source.topic,
                partition=source.partition,
                offset=source.offset,
                consumer_group=group,
            )
            await self.publish(letter)
        except Exception:
            digest = hashlib.sha256(body).hexdigest()
            log.exception("dead letter from %s (sha256 %s) not published; skipped", where, digest)

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
        """Stops the subscribers, letting a handler that is running finish (for a while) and
        committing what was handled; the producer stays up, so a service can still say
        goodbye."""
        for subscription in self._subscriptions:
            await subscription.drain()
        for subscriber in self.broker.subscribers:
            await subscriber.stop()

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.drain()
        await self.broker.stop()

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


REREAD_TRIES = 5  # fetches that may skip the same offset before it is taken as a gap
COMMIT_INTERVAL_S = 0.2  # the most a crash makes a consumer read again, in time
DRAIN_S = 15.0  # how long stopping waits for a handler that is running


class Rereads:
    """Sends a consumer back to an offset a fetch skipped.

    Tansu (memory storage) can answer a fetch with records beyond one not yet visible when
    producers append to one partition concurrently: every append is acknowledged, and the same
    fetch made again a moment later returns the missing record (seen with aiokafka alone, several
    producers appending with `send_and_wait`; tests/integration/test_skipped_offsets.py makes
    both consumers meet a skip). Our topics are
    neither compacted nor transactional, so a record in between exists; a consumer that took
    the later one would never see it (an auction would wait out its window for a bid). After
    `REREAD_TRIES` fetches skipping the same offset it is taken as a real gap, with a warning."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._at: dict[TopicPartition, tuple[int, int]] = {}  # → (offset, tries)

    def skipped(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, expected: int, record: Any
    ) -> bool:
        """Whether `record` comes after `expected` on its partition, and the consumer was sent
        back to read from `expected` (the caller drops the record: it comes again, in order)."""
        if record.offset <= expected:
            return False
        at, tries = self._at.get(tp, (expected, 0))
        tries = tries + 1 if at == expected else 1
        self._at[tp] = (expected, tries)
        log.warning(
            "%s: %s[%d] skipped offsets %d to %d (%s)",
            self.group,
            tp.topic,
            tp.partition,
            expected,
            record.offset - 1,
            "reading them again" if tries <= REREAD_TRIES else "taken as a gap",
        )
        if tries > REREAD_TRIES:
            return False
        consumer.seek(tp, expected)
        return True


class Committer:
    """Commits a consumer's offsets off its path: the consumer says what it has safely done
    (`want`) and goes on reading; a background task commits it, at most one commit in flight
    and one every `interval_s`, each covering everything wanted so far (a batch of records
    costs one commit, an idle consumer none).

    At least once: before committing, it waits for every record the bus sent until then to be
    acknowledged, so what a record caused is in the log before its offset is committed. A send
    that failed is kept in `failure` and nothing is committed from then on: the records are
    read again after a restart (the services are idempotent)."""

    def __init__(
        self,
        bus: Bus,
        group: str,
        consumer: Callable[[], AIOKafkaConsumer | None],
        interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self.bus = bus
        self.group = group
        self.interval_s = interval_s
        self.commit_s = 0.0  # how long the consumer last waited for a commit (the trace's)
        self.failure: BaseException | None = None
        self._consumer = consumer
        self._wanted: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._first: set[asyncio.Task] = set()

    def want(self, offsets: dict[TopicPartition, int]) -> None:
        """Offsets (next to read) that may be committed; committed soon, not now. A partition
        never committed here is committed at once: a group that starts from the end of a
        partition has no offset there to be read again from until its first commit."""
        self._wanted.update(offsets)
        if any(tp not in self._committed for tp in offsets):
            self._first.add(asyncio.create_task(self.flush()))
            self._first.difference_update([t for t in self._first if t.done()])
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self.interval_s)

    async def flush(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commits now what is wanted (on `partitions`, default all), after any commit in
        flight; a commit that fails is logged and left: the records are read again."""
        async with self._lock:
            wanted = {
                tp: o
                for tp, o in self._wanted.items()
                if (partitions is None or tp in partitions) and self._committed.get(tp) != o
            }
            consumer = self._consumer()
            if not wanted or consumer is None or not await self._confirmed():
                return
            try:
                await consumer.commit(wanted)
            except KafkaError as exc:
                log.warning("%s: offset commit failed (%r): records are re-read", self.group, exc)
                return
            self._committed.update(wanted)

    async def _confirmed(self) -> bool:
        """Waits for the bus's unacknowledged sends; False once one of them has failed."""
        if self.failure is None:
            for sent in await asyncio.gather(*self.bus.unconfirmed(), return_exceptions=True):
                if isinstance(sent, BaseException):
                    log.error(
                        "%s: a record sent was not acknowledged (%r): offsets are no "
                        "longer committed, a restart reads again",
                        self.group,
                        sent,
                    )
                    self.failure = sent
        return self.failure is None

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._wanted.pop(tp, None)
            self._committed.pop(tp, None)

    async def close(self) -> None:
        """Commits what is wanted, then stops the background task."""
        await asyncio.gather(*self._first, return_exceptions=True)
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _Subscription:
    """One `Bus.subscribe`: each record its handler has finished with is committed (soon, by a
    `Committer`), so a crash means redelivery, never loss; a record that comes after one a
    fetch skipped is dropped and read again in order (`Rereads`). Keeps when the consumer was
    last free to take a record, for the trace."""

    def __init__(self, bus: Bus, group: str) -> None:
        self.group = group
        self.subscriber: Any = None  # FastStream's, which owns the consumer
        self.free = time.time()
        self.idle = asyncio.Event()
        self.idle.set()
        self.committer = Committer(bus, group, lambda: self.consumer)
        self.expected: dict[TopicPartition, int] = {}  # the next offset to handle
        self.rereads = Rereads(group)

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        """The subscriber's consumer; None before start and on FastStream's in-memory broker."""
        consumer = getattr(self.subscriber, "consumer", None)
        return consumer if isinstance(consumer, AIOKafkaConsumer) else None

    def stamp(self, source: Source, fetched: float) -> Stamp:
        return stamp_of(source, self.free, fetched, self.committer.commit_s)

    def in_order(self, record: Any) -> bool:
        """False for a record after an offset its fetch skipped: the consumer reads again."""
        if self.consumer is None:
            return True
        tp = TopicPartition(record.topic, record.partition)
        expected = self.expected.get(tp)
        return expected is None or not self.rereads.skipped(self.consumer, tp, expected, record)

    def handled(self, record: Any) -> None:
        if self.consumer is not None:
            tp = TopicPartition(record.topic, record.partition)
            self.expected[tp] = record.offset + 1
            self.committer.want({tp: record.offset + 1})
        self.free = time.time()

    def forget(self, partitions: set[TopicPartition]) -> None:
        self.committer.forget(partitions)
        for tp in partitions:
            self.expected.pop(tp, None)

    async def drain(self) -> None:
        """Takes no more records, lets the one in hand finish (for a while), commits."""
        consumer = self.consumer
        if consumer is not None:
            consumer.pause(*consumer.assignment())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), DRAIN_S)
        await self.committer.close()


class _SubscriptionRebalance(ConsumerRebalanceListener):
    """Commits what was handled on partitions before they go to another member."""

    def __init__(self, subscription: _Subscription) -> None:
        self.subscription = subscription

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.subscription.committer.flush(set(revoked))
        self.subscription.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def new_consumer(bootstrap: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """The one place a Kafka consumer is constructed. Nothing is committed unless a caller
    commits by hand: the services commit what they have safely done, the readers nothing."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, enable_auto_commit=False, **options
    )


async def reader(config: BrokerConfig) -> AIOKafkaConsumer:
    """A started consumer of no group that commits nothing: for reading history (replay from
    Kafka, the roster, the ingest benchmark), where offsets are chosen by hand."""
    consumer = new_consumer(
        config.bootstrap, fetch_max_wait_ms=config.fetch_max_wait_ms, **client_options(config)
    )
    await consumer.start()
    return consumer


async def from_start(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Assigns every partition of `topics` to a reader, positioned at the first record."""
    await consumer.topics()  # loads the cluster metadata that partitions_for_topic reads
    parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    return parts


async def caught_up(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> bool:
    """Whether the consumer has read, on each partition, all that was there when it last fetched.

    Uses the high-water mark of the fetch responses: Tansu answers `end_offsets()` wrongly.
    """
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


def _source(record: Any) -> Source:
    """Where a record fetched by aiokafka was read."""
    return Source(record.topic, record.partition, record.offset, record.key, tuple(record.headers))


@dataclass(frozen=True)
class Delivery:
    """One record as read: its event (None when it held none and went to `dlq`), where it was
    read, and its bytes as they came."""

    event: Event | None
    source: Source
    body: bytes
    fetched: float = 0.0  # when the fetch that brought it returned (time.time())


class PartitionedConsumer:
    """A member of a consumer group that commits by hand: the one way the services that keep
    state (auctioneer, verifier, recorder) read their streams.

    It does the partition protocol they share: range assignment, so partition p of every stream
    goes to the same member (co-partitioning by task id); each record decoded, or dead-lettered,
    through the bus; the next offset to read per partition, advanced only once the service has
    taken the record; which assigned partitions are still catching up with the log as it was
    when they were assigned (a service decides nothing there before); and a commit that skips
    what is already committed and survives a failed commit (the records are re-read, and every
    service is idempotent). `owner` hears of partitions revoked, to commit and forget them.
    """

    def __init__(
        self, bus: Bus, streams: Iterable[str], group: str, owner: PartitionOwner | None = None
    ) -> None:
        self.bus = bus
        self.group = bus.group(group)
        self.owner = owner
        self.topics = [bus.topics.prefix + s for s in streams]
        self.next_offsets: dict[TopicPartition, int] = {}
        self.catching_up: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self.committer = Committer(bus, self.group, lambda: self._consumer)
        self.free = time.time()  # when the last poll began: the consumer was free to read
        self.rereads = Rereads(self.group)

    async def start(self) -> None:
        config = self.bus.config
        self._consumer = new_consumer(
            config.bootstrap,
            group_id=self.group,
            client_id=self.bus.producer,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
            **client_options(config),
        )
        self._consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self._consumer.start()

    async def stop(self) -> None:
        await self.committer.close()
        if self._consumer is not None:
            await self._consumer.stop()

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def position(self, tp: TopicPartition) -> int:
        return await self._consumer.position(tp)

    def pause(self, partitions: set[TopicPartition]) -> None:
        """Stops fetching from `partitions` (assigned ones): their records wait on the topic."""
        self._consumer.pause(*(partitions & self.assignment()))

    def resume(self, partitions: set[TopicPartition]) -> None:
        self._consumer.resume(*(partitions & self.assignment()))

    def ready_partitions(self) -> set[int]:
        """The partitions (by number) assigned and caught up: where the service may decide."""
        assigned = {tp.partition for tp in self.assignment()}
        return assigned - {tp.partition for tp in self.catching_up}

    async def poll(
        self, timeout_s: float, max_records: int | None = None
    ) -> AsyncIterator[Delivery]:
        """The records of one fetch, in order per partition. A record's offset counts as read
        once the caller asks for the next one, so a record being handled is never committed."""
        self.free = time.time()
        fetched = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records
        )
        now = time.time()
        kept = [
            (tp, record) for tp, records in fetched.items() for record in self._kept(tp, records)
        ]
        bodies = [(r.value if r.value is not None else b"", _source(r)) for _, r in kept]
        events = await self.bus.receive_many(bodies, self.group)
        for (tp, record), (body, source), event in zip(kept, bodies, events, strict=True):
            yield Delivery(event, source, body, now)
            self.next_offsets[tp] = record.offset + 1

    def _kept(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """The records of a fetch up to any offset it skipped (`Rereads`)."""
        expected = self.next_offsets.get(tp)
        for i, record in enumerate(records):
            if expected is not None and self.rereads.skipped(self._consumer, tp, expected, record):
                return records[:i]  # read again from the first missing offset, next fetch
            expected = record.offset + 1
        return records

    async def caught_up(self) -> list[int]:
        """Checks the partitions still catching up; returns the numbers of those whose every
        stream has now caught up."""
        done = []
        for tp in list(self.catching_up):
            if await caught_up(self._consumer, [tp]):
                self.catching_up.discard(tp)
                if not any(c.partition == tp.partition for c in self.catching_up):
                    done.append(tp.partition)
        return done

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commits `offsets` now (what is not committed already), once every record the bus
        sent before is acknowledged."""
        self.committer.want(offsets)
        start = time.time()
        await self.committer.flush(set(offsets))
        self.committer.commit_s = time.time() - start

    def commit_soon(self, offsets: dict[TopicPartition, int]) -> None:
        """Commits `offsets` off the caller's path, within `COMMIT_INTERVAL_S` (`Committer`)."""
        self.committer.want(offsets)

    def stamp(self, delivery: Delivery) -> Stamp:
        """The trace stamp of a delivery this consumer polled (see `TRACE_HEADER`)."""
        return stamp_of(delivery.source, self.free, delivery.fetched, self.committer.commit_s)

    def assigned(self, partitions: set[TopicPartition]) -> None:
        log.info(
            "%s assigned %s",
            self.group,
            sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions),
        )
        self.catching_up |= partitions

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """The owner commits what it safely can and forgets the partitions; then so do we."""
        if self.owner is not None:
            await self.owner.revoked(partitions)
        self.committer.forget(partitions)
        for tp in partitions:
            self.next_offsets.pop(tp, None)
            self.catching_up.discard(tp)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, consumer: PartitionedConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.consumer.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.consumer.assigned(set(assigned))
