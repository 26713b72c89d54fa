"""The recorder: appends every event on every stream to Postgres and keeps the projections.

Postgres is the marketplace's memory and audit trail, so the log must hold every record exactly
once. The recorder reads all topics in consumer group `recorder` with manual commits, in
batches. Each batch is one transaction: the records are appended to `events`, where the unique
event id refuses any event already there, and the projections are updated for the records
actually appended. Only after that transaction commits are the Kafka offsets committed. A
crash between the two means redelivery, which the constraint turns into a no-op: no event
lost, none written twice. (Not the Kafka position: a new broker starts its offsets at 0
again, while the log in Postgres lives on.)

A record that holds no valid event is dead-lettered by the bus; the `DeadLetter` on `dlq` is
recorded like any other event, so the malformed record reaches the log whole with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid

import asyncpg

from marketplace.log.store import Incoming, Position, store
from marketplace.shared.bus import Bus, Delivery, PartitionedConsumer, Source
from marketplace.shared.config import Config
from marketplace.shared.migrate import apply_migrations
from schemas.codec import EventDecodeError, decode
from schemas.events import DeadLetter
from schemas.topics import STREAMS

log = logging.getLogger("recorder")
GROUP = "recorder"
BATCH_MAX = 2000  # records per transaction: large enough to amortise a commit, small to retry
POLL_S = 0.2
RETRY_MAX_S = 30.0
_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
_BAD_DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, UnicodeError)


# --- the service ------------------------------------------------------------------------------


class Recorder:
    """Kafka → Postgres, at least once in, exactly once stored."""

    def __init__(self, config: Config, bus: Bus, database_url: str) -> None:
        self.bus = bus
        self.database_url = database_url
        self.group = bus.group(GROUP)
        self.consumer = PartitionedConsumer(bus, STREAMS, GROUP)
        self._pool: asyncpg.Pool | None = None

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
            await self._pool.close()

    async def _consume(self, stop: asyncio.Event) -> None:
        await self.consumer.start()
        log.info("recording every stream under %r in group %s", self.bus.topics.prefix, self.group)
        try:
            while not stop.is_set():
                await self._step(stop)
        finally:
            await self.consumer.stop()

    async def _step(self, stop: asyncio.Event) -> None:
        """One batch: decode, store in one transaction, then commit the offsets."""
        deliveries = [d async for d in self.consumer.poll(POLL_S, max_records=BATCH_MAX)]
        if not deliveries:
            return
        batch = [item for d in deliveries if (item := self._incoming(d)) is not None]
        if not await self._store_retrying(batch, stop):
            return  # asked to stop while the database was away: nothing committed, redelivered
        await self.consumer.commit(self.consumer.next_offsets)

    def _incoming(self, delivery: Delivery) -> Incoming | None:
        source, event = delivery.source, delivery.event
        if event is None and source.topic == self.bus.topics.dlq:
            event = self._dead_letter_in_place(source, delivery.body)
        if event is None:
            return None
        position = Position(source.topic, source.partition, source.offset)
        return Incoming.of(position, source.key, event)

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
