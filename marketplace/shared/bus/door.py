"""`Bus`: one principal's door to Kafka. What goes out is signed, capped and keyed; what comes
in is decoded and checked, or dead-lettered; `subscribe` runs a handler per event in a group,
or, for an agent, on its inbox partition (`addressee`); `send_copies` copies a record to the
inboxes of the agents it is addressed to (docs/delivery.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from marketplace.shared import signing
from marketplace.shared.admin import ensure_topics
from marketplace.shared.bus.addressed import Headers, Letter, addressed
from marketplace.shared.bus.consumer import PartitionedConsumer
from marketplace.shared.bus.records import TRACE_HEADER, Handler, Source, Stamp, answering
from marketplace.shared.config import BrokerConfig, ConfigError
from marketplace.shared.kafka_auth import client_options
from marketplace.shared.stopping import LEAVE_S, within
from schemas.codec import EventDecodeError, decode, encode
from schemas.events import MAX_CLOCK_SKEW, MAX_REASON, DeadLetter, Event
from schemas.topics import INBOX, INBOX_CARRIES, STREAMS, Topics

log = logging.getLogger(__name__)


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
        self._options = client_options(config)  # a missing secret fails here, not at start
        self._producer: AIOKafkaProducer | None = None  # made in the event loop, at start
        self._carried = {self.topics.prefix + s: (s, models) for s, models in STREAMS.items()}
        self._carried[self.topics.inbox] = (INBOX, INBOX_CARRIES)
        self.checked = 0  # records decoded and signature-checked (`receive_many`)
        self._subscriptions: list[tuple[PartitionedConsumer, Handler]] = []
        self._running: dict[PartitionedConsumer, asyncio.Task] = {}  # each one's `run`
        self._unconfirmed: set[asyncio.Future] = set()

    # --- publishing ------------------------------------------------------------------------

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
        return await self.send_record(event, self.record(event, cause), confirm)

    async def send_record(
        self, event: Event, record: tuple[bytes, Headers], confirm: bool = False
    ) -> asyncio.Future | None:
        """`send` of `event` as `record` made it: a service that copies the record to the
        agents it is addressed to sends them these very bytes (`send_copies`)."""
        value, headers = record
        sent = await self._send(self.topics.for_event(event), value, event.key.encode(), headers)
        if confirm:
            await sent
            return None
        return sent

    def record(self, event: Event, cause: Stamp | None = None) -> tuple[bytes, Headers]:
        """The value and headers `send` publishes `event` with: encoded, capped, signed."""
        value = encode(event, self.config.max_record_bytes)  # over the cap: refused here
        return value, tuple(self._headers(event, cause))

    async def send_copies(self, letter: Letter) -> None:
        """Copies a record already on its stream to the inbox of each agent it is addressed
        to: the same value and signature, keyed by the agent's id (so its partition) and
        marked with it (`sale-to`). Not waited for: `confirmed` is."""
        for agent_id in letter.to:
            headers = list(addressed(letter.headers, agent_id))
            await self._send(self.topics.inbox, letter.value, agent_id.encode(), headers)

    async def _send(
        self, topic: str, value: bytes, key: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> asyncio.Future:
        if self._producer is None:
            raise RuntimeError(f"{self.producer}: the bus is not started")
        sent = await self._producer.send(topic, value, key=key, headers=list(headers))
        if not sent.done():
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

    def _headers(self, event: Event, cause: Stamp | None = None) -> list[tuple[str, bytes]]:
        signed = self.signer.headers(event) if self.signer is not None else {}
        headers = {"type": event.type, **signed}
        if self.config.trace:
            stamp = {**(cause or answering.get() or {}), "sent": time.time(), "by": self.producer}
            headers[TRACE_HEADER] = json.dumps(stamp)
        return [(name, value.encode()) for name, value in headers.items()]

    # --- consuming -------------------------------------------------------------------------

    def subscribe(
        self,
        streams: Iterable[str],
        group: str,
        handler: Handler,
        *,
        from_start: bool = True,
        addressee: str | None = None,
    ) -> PartitionedConsumer:
        """Calls `handler` for each valid event on the streams, in consumer group `group`, from
        `start` on (`PartitionedConsumer.run`: commits after handling, dead letters, re-reads).

        Group names carry the topic prefix, like topics: deployments (and tests) that share a
        cluster under different prefixes never share a group.

        `from_start`: a new group reads each topic from its first record; otherwise from now.
        `addressee`: an agent's id: only its partition, only the records addressed to it.
        """
        consumer = PartitionedConsumer(
            self, streams, group, from_start=from_start, addressee=addressee
        )
        self._subscriptions.append((consumer, handler))
        return consumer

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
        self.checked += len(records)
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
        stream, carried = self._carried.get(topic, (None, ()))
        if stream is not None and type(event) not in carried:
            raise EventDecodeError(f"type: {event.type} does not belong on the {stream} stream")
        if (ahead := _ahead(event)) is not None:
            raise EventDecodeError(ahead)
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
        consumers = [consumer for consumer, _ in self._subscriptions]
        async with asyncio.timeout(timeout_s):
            while not all(consumer.assignment() for consumer in consumers):
                await asyncio.sleep(0.02)
            for consumer in consumers:
                for tp in consumer.assignment():
                    await consumer.position(tp)

    # --- the life of a bus -----------------------------------------------------------------

    async def start(self) -> None:
        """Creates any missing topic first (an auto-created one would get the wrong
        partitions), then starts the producer and the subscriptions."""
        await ensure_topics(self.config)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap,
            client_id=self.producer,
            enable_idempotence=False,  # Tansu has no idempotent producer; consumers dedupe
            **self._options,
        )
        await self._producer.start()
        for consumer, handler in self._subscriptions:
            await consumer.start()
            self._running[consumer] = asyncio.create_task(consumer.run(handler))

    async def stop_consuming(self) -> None:
        """Stops the subscriptions, letting a handler that is running finish (for a while) and
        committing what was handled; the producer stays up, so a service can still say
        goodbye. Each step has its bound (`PartitionedConsumer.drain`), even with the broker
        gone."""
        running, self._running = self._running, {}
        await asyncio.gather(*(consumer.drain(task) for consumer, task in running.items()))

    async def stop(self) -> None:
        """Stops consuming, then the producer: what it still holds is sent if the broker takes
        it within `LEAVE_S`, else dropped (nothing was committed on the strength of a record
        not acknowledged: `Committer`)."""
        await self.stop_consuming()
        producer, self._producer = self._producer, None
        if producer is not None:
            await within(producer.stop(), LEAVE_S, f"{self.producer}: flushing its producer")

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _ahead(event: Event) -> str | None:
    """Why an event dated beyond `MAX_CLOCK_SKEW` ahead of this clock is refused, or None."""
    dated = event.occurred_at
    if dated.tzinfo is None:
        dated = dated.replace(tzinfo=UTC)
    ahead = dated - datetime.now(UTC)
    if ahead <= MAX_CLOCK_SKEW:
        return None
    return (
        f"occurred_at: {event.occurred_at.isoformat()} is {ahead.total_seconds():.0f} s ahead "
        f"of this consumer's clock (at most {MAX_CLOCK_SKEW.total_seconds():g} s)"
    )
