"""The recorder: appends every event on every stream to Postgres and keeps the projections.

Postgres is the marketplace's memory and audit trail, so the log must hold every record exactly
once. The recorder reads all topics in consumer group `recorder` with manual commits, one
fetch per batch. Each batch is one transaction: the records are appended to `events`, where
the unique event id refuses any event already there, and the projections are updated for the
records actually appended. Only after that transaction commits are the Kafka offsets
committed. A crash between the two means redelivery, which the constraint turns into a no-op:
no event lost, none written twice. (Not the Kafka position: a new broker starts its offsets
at 0 again, while the log in Postgres lives on.)

The next fetch is decoded while a batch is being stored: decoding and checking signatures is
the recorder's CPU, the transaction is Postgres's. Batches are still stored, and their offsets
committed, one after the other and in order.

A record that holds no valid event is dead-lettered by the bus; the `DeadLetter` on `dlq` is
recorded like any other event, so the malformed record reaches the log whole with its reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
import uuid

import asyncpg
from aiokafka import TopicPartition

from marketplace.log.gc_pause import paused_gc
from marketplace.log.store import Incoming, Position, store
from marketplace.shared import signing
from marketplace.shared.bus import Bus, Delivery, PartitionedConsumer, Source
from marketplace.shared.config import Config
from marketplace.shared.migrate import apply_migrations
from marketplace.shared.stopping import HANDLER_S, LEAVE_S, within
from schemas.codec import EventDecodeError, decode
from schemas.events import DeadLetter
from schemas.topics import STREAMS

log = logging.getLogger("recorder")
GROUP = "recorder"
BATCH_MAX = 2000  # records per transaction: large enough to amortise a commit, small to retry
POLL_S = 0.2
YIELD_EVERY = 64  # records decoded between turns given to the batch being stored
RETRY_MAX_S = 30.0
_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # A server killed mid-transaction can leave the pool's connection half-way through an
    # operation; releasing it then fails with these. Storing is idempotent, so retry.
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
_BAD_DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, UnicodeError)


def signed_by(source: Source) -> tuple[str | None, bytes | None]:
    """The key id and signature a record carried, as the log keeps them (None: unsigned)."""
    headers = signing.header_map(source.headers)
    key_id, signature = headers.get(signing.KEY_ID_HEADER), headers.get(signing.SIGNATURE_HEADER)
    try:
        raw = base64.b64decode(signature, validate=True) if signature else None
    except ValueError:
        raw = None
    return (key_id.decode(errors="replace") if key_id else None), raw


# --- the service ------------------------------------------------------------------------------


class Recorder:
    """Kafka → Postgres, at least once in, exactly once stored."""

    def __init__(self, config: Config, bus: Bus, database_url: str) -> None:
        self.bus = bus
        self.database_url = database_url
        self.group = bus.group(GROUP)
        self.consumer = PartitionedConsumer(bus, STREAMS, GROUP)
        self._pool: asyncpg.Pool | None = None
        # Seconds the next batch, decoded, waited for the last one's transaction: what
        # Postgres holds the recorder up by (`sale ingest-bench` prints it).
        self.waited_for_postgres_s = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Migrates, then records batch after batch until `stop` is set."""
        # No floor of idle connections: while Postgres is down the pool would log a traceback
        # each time it failed to refill one; `_store_retrying` already says what is going on.
        self._pool = await asyncpg.create_pool(self.database_url, min_size=0, max_size=1)
        try:
            async with self._pool.acquire() as conn:
                if applied := await apply_migrations(conn):
                    log.info("migrated the database to version %d", applied[-1])
            await self.bus.start()
            try:
                await self._consume(stop)
            finally:
                await self.bus.stop()
        finally:
            if not await within(self._pool.close(), LEAVE_S, "recorder: closing its pool"):
                self._pool.terminate()

    async def _consume(self, stop: asyncio.Event) -> None:
        """Fetches and decodes batch N+1 while batch N is stored, one batch in flight at most.

        Decoding (with its signature check) is the recorder's CPU and the transaction is
        Postgres's, so the two overlap. Batches are still stored one after the other, in order,
        and each one's offsets are committed only after its own transaction: a crash loses
        nothing and the event ids refuse what is redelivered."""
        await self.consumer.start()
        log.info("recording every stream under %r in group %s", self.bus.topics.prefix, self.group)
        storing: asyncio.Task[bool] | None = None
        try:
            while not stop.is_set():
                batch, offsets = await self._fetch(storing)
                if storing is not None and not await self._stored(storing):
                    return  # stopped while the database was away: the rest is redelivered
                storing = None
                if offsets:  # even when every record was dead-lettered: they are done with
                    storing = asyncio.create_task(self._record(batch, offsets, stop))
        finally:
            if storing is not None:
                await self._finish(storing)
            await self.consumer.stop()

    async def _finish(self, storing: asyncio.Task[bool]) -> None:
        """On the way out, the batch in hand: stored and committed if that takes at most
        `HANDLER_S`, else cancelled (its transaction rolls back and its offsets stay
        uncommitted: it is read again, and the event ids refuse what was stored already)."""
        if await within(asyncio.shield(storing), HANDLER_S, "recorder: the batch in hand"):
            return
        storing.cancel()
        await within(_ended(storing), LEAVE_S, "recorder: rolling the batch back")

    async def _stored(self, storing: asyncio.Task[bool]) -> bool:
        start = time.perf_counter()
        try:
            return await storing
        finally:
            self.waited_for_postgres_s += time.perf_counter() - start

    async def _fetch(
        self, storing: asyncio.Task | None
    ) -> tuple[list[Incoming], dict[TopicPartition, int]]:
        """One fetch decoded, and the offsets to commit once it is stored. While a batch is
        being stored it gets the event loop every YIELD_EVERY records, so its statements go
        out while this batch decodes. The collector waits for the batch (`paused_gc`)."""
        batch: list[Incoming] = []
        seen = 0
        with contextlib.ExitStack() as decoding:
            async for delivery in self.consumer.poll(POLL_S, max_records=BATCH_MAX):
                if not seen:  # records are in: not while the fetch waits for them
                    decoding.enter_context(paused_gc())
                if (item := self._incoming(delivery)) is not None:
                    batch.append(item)
                seen += 1
                if storing is not None and seen % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        return batch, dict(self.consumer.next_offsets) if seen else {}

    async def _record(
        self, batch: list[Incoming], offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> bool:
        """Stores one batch, then commits its offsets; False if stopped before it was stored.
        A partition taken away meanwhile is not committed: its new owner reads it again."""
        if not await self._store_retrying(batch, stop):
            return False
        assigned = self.consumer.assignment()
        await self.consumer.commit({tp: o for tp, o in offsets.items() if tp in assigned})
        return True

    def _incoming(self, delivery: Delivery) -> Incoming | None:
        source, event = delivery.source, delivery.event
        if event is None and source.topic == self.bus.topics.dlq:
            event = self._dead_letter_in_place(source, delivery.body)
        if event is None:
            return None
        position = Position(source.topic, source.partition, source.offset)
        return Incoming.of(position, source.key, event, *signed_by(source))

    def _dead_letter_in_place(self, source: Source, body: bytes) -> DeadLetter:
        """A malformed record on `dlq` itself: the bus will not dead-letter it again (that could
        loop), so it is logged here as the dead letter it should have been. Its event id is
        derived from the record, so a redelivery is refused like any other event's."""
        try:
            event = decode(body, self.bus.config.max_record_bytes)
            error = f"type: {event.type} does not belong on the dlq stream"
        except EventDecodeError as exc:
            error = str(exc)
        digest = hashlib.sha256(body).hexdigest()
        where = f"{source.topic}/{source.partition}/{source.offset}/{digest}"
        return DeadLetter.of(
            body,
            source.key,
            error,
            excerpt=self.bus.config.dead_letter_excerpt_bytes,
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, where),
            producer=self.bus.producer,
            source_topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            consumer_group=self.group,
        )

    async def _store_retrying(self, batch: list[Incoming], stop: asyncio.Event) -> bool:
        """Stores the batch, waiting out a database that is away; False if stopped meanwhile."""
        delay = 0.5
        while True:
            try:
                await self._store_or_dead_letter(batch)
                return True
            except _CONNECTION_ERRORS as exc:
                log.warning("database unavailable (%r); retrying in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return False
            delay = min(delay * 2, RETRY_MAX_S)

    async def _store_or_dead_letter(self, batch: list[Incoming]) -> None:
        """Stores the batch; if Postgres refuses its data, stores record by record and
        dead-letters the one it refuses, so one bad record cannot stop the log."""
        try:
            async with self._pool.acquire() as conn:
                await store(conn, batch)
        except _BAD_DATA_ERRORS as exc:
            if len(batch) == 1:
                await self._refused(batch[0], exc)
                return
            for item in batch:
                await self._store_or_dead_letter([item])

    async def _refused(self, item: Incoming, exc: Exception) -> None:
        pos = item.position
        log.error("Postgres refused %s at %s: %r", item.event.type, pos, exc)
        source = Source(pos.topic, pos.partition, pos.offset, item.key)
        body = item.payload.encode()
        await self.bus.dead_letter(source, body, self.group, f"recorder could not store: {exc}")


async def _ended(task: asyncio.Task) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await task
