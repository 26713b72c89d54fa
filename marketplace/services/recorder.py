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
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from marketplace.shared.bus import Bus, Delivery, PartitionedConsumer, Source
from marketplace.shared.config import Config
from marketplace.shared.migrate import apply_migrations
from schemas.codec import EventDecodeError, decode
from schemas.events import (
    MAX_REASON,
    AuctionClosed,
    AuctionOpened,
    BidSubmitted,
    DeadLetter,
    Event,
    RefinementCalled,
    ReviewSubmitted,
    SubmissionRejected,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
)
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


# --- the storage boundary: what goes in, what comes out ---------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a record sat in Kafka, kept with it in the log (its identity is its event id:
    positions start again on a new broker)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Incoming:
    """A record to append: its position, its key, the event it holds and that event as JSON."""

    position: Position
    key: bytes | None
    event: Event
    payload: str

    @classmethod
    def of(cls, position: Position, key: bytes | None, event: Event) -> Incoming:
        """Serialises once. Any NUL character becomes U+FFFD: Postgres text and jsonb refuse
        NUL, and one LLM output holding one must not stop the log."""
        payload = event.model_dump_json()
        if "\\u0000" in payload:
            payload = json.dumps(_without_nul(json.loads(payload)))
            event = type(event).model_validate_json(payload)
        return cls(position, key, event, payload)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class StoredEvent:
    """One row of the log read back, typed: what replay and audit work from."""

    id: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    event: Event
    recorded_at: datetime

    @property
    def type(self) -> str:
        return self.event.type


async def load_events(conn: asyncpg.Connection, task_id: str | None = None) -> list[StoredEvent]:
    """The log (or one task's part of it) in recorded order, each payload decoded and validated.

    A row that no longer decodes raises `EventDecodeError`: a log that was tampered with
    should stop a replay, not be skipped.
    """
    query = 'SELECT id, topic, partition, "offset", key, payload, recorded_at FROM events'
    if task_id is None:
        rows = await conn.fetch(query + " ORDER BY id")
    else:
        rows = await conn.fetch(query + " WHERE task_id = $1 ORDER BY id", task_id)
    return [
        StoredEvent(
            id=r["id"],
            topic=r["topic"],
            partition=r["partition"],
            offset=r["offset"],
            key=r["key"],
            event=decode(r["payload"]),
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ]


# --- appending a batch ------------------------------------------------------------------------

_APPEND = """
INSERT INTO events (topic, partition, "offset", key, type, event_id, task_id, agent_id,
                    producer, occurred_at, payload)
SELECT topic, partition, "offset", key, type, event_id, task_id, agent_id,
       producer, occurred_at, payload::jsonb
FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::text[], $6::uuid[],
            $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[])
     AS r(topic, partition, "offset", key, type, event_id, task_id, agent_id,
          producer, occurred_at, payload)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


async def append(conn: asyncpg.Connection, batch: Sequence[Incoming]) -> list[Incoming]:
    """Appends the batch in one statement; returns the records whose event was not there yet
    (once each, in batch order)."""
    firsts: dict[uuid.UUID, Incoming] = {}
    for item in batch:
        firsts.setdefault(item.event.event_id, item)
    columns: list[list[Any]] = [[] for _ in range(11)]
    for item in firsts.values():
        for column, value in zip(columns, _event_row(item), strict=True):
            column.append(value)
    rows = await conn.fetch(_APPEND, *columns)
    new = {r["event_id"] for r in rows}
    return [item for event_id, item in firsts.items() if event_id in new]


def _event_row(item: Incoming) -> tuple[Any, ...]:
    event, pos = item.event, item.position
    agent_id = getattr(event, "agent_id", None) or getattr(event, "juror", None)
    return (
        pos.topic,
        pos.partition,
        pos.offset,
        item.key,
        event.type,
        event.event_id,
        getattr(event, "task_id", None),
        agent_id,
        event.producer,
        _aware(event.occurred_at),
        item.payload,
    )


def _aware(moment: datetime) -> datetime:
    """A naive timestamp is read as UTC, the marketplace's only clock, not the server's zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- projections ------------------------------------------------------------------------------

_TASK_POSTED = """
INSERT INTO auctions (task_id, kind, tenant, prompt, budget, posted_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (task_id) DO UPDATE SET kind = EXCLUDED.kind, tenant = EXCLUDED.tenant,
    prompt = EXCLUDED.prompt, budget = EXCLUDED.budget, posted_at = EXCLUDED.posted_at
WHERE auctions.posted_at IS NULL
"""
_AUCTION_OPENED = """
INSERT INTO auctions (task_id, opened_at, agents) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (task_id) DO UPDATE SET opened_at = EXCLUDED.opened_at, agents = EXCLUDED.agents
WHERE auctions.opened_at IS NULL
"""
_REFINEMENT_CALLED = """
INSERT INTO auctions (task_id, refinement_at, provisional_bid_id, provisional_agent_id,
                      provisional_score)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (task_id) DO UPDATE SET refinement_at = EXCLUDED.refinement_at,
    provisional_bid_id = EXCLUDED.provisional_bid_id,
    provisional_agent_id = EXCLUDED.provisional_agent_id,
    provisional_score = EXCLUDED.provisional_score
WHERE auctions.refinement_at IS NULL
"""
_AUCTION_CLOSED = """
INSERT INTO auctions (task_id, closed_at, reason, winner_agent_id, winner_bid_id, winning_plan,
                      weights)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
ON CONFLICT (task_id) DO UPDATE SET closed_at = EXCLUDED.closed_at, reason = EXCLUDED.reason,
    winner_agent_id = EXCLUDED.winner_agent_id, winner_bid_id = EXCLUDED.winner_bid_id,
    winning_plan = EXCLUDED.winning_plan, weights = EXCLUDED.weights
WHERE auctions.closed_at IS NULL
"""
_BID_SCORED = """
INSERT INTO bids (bid_id, task_id, agent_id, round, price, plan_tokens, entropy,
                  jury, cost, value, score, eligible, ineligible_reason, won)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, $14)
ON CONFLICT (bid_id) DO UPDATE SET jury = EXCLUDED.jury, cost = EXCLUDED.cost,
    value = EXCLUDED.value, score = EXCLUDED.score, eligible = EXCLUDED.eligible,
    ineligible_reason = EXCLUDED.ineligible_reason, won = EXCLUDED.won
WHERE bids.score IS NULL
"""
_BID_SUBMITTED = """
INSERT INTO bids (bid_id, task_id, agent_id, round, price, plan_tokens, entropy, event_id,
                  model, plan, memory_refs, requests, prompt_tokens, completion_tokens,
                  usage_cost, submitted_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16)
ON CONFLICT (bid_id) DO UPDATE SET event_id = EXCLUDED.event_id, model = EXCLUDED.model,
    plan = EXCLUDED.plan, memory_refs = EXCLUDED.memory_refs, requests = EXCLUDED.requests,
    prompt_tokens = EXCLUDED.prompt_tokens, completion_tokens = EXCLUDED.completion_tokens,
    usage_cost = EXCLUDED.usage_cost, submitted_at = EXCLUDED.submitted_at
WHERE bids.submitted_at IS NULL
"""
_REVIEW = """
INSERT INTO reviews (task_id, juror, round, event_id, scores, requests, prompt_tokens,
                     completion_tokens, usage_cost, submitted_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING
"""
_REJECTION = """
INSERT INTO rejections (rejected_event_id, task_id, agent_id, submission, bid_id, reason, detail,
                        rejected_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
"""
_RESULT = """
INSERT INTO results (task_id, bid_id, agent_id, event_id, output, error, duration_s, cost,
                     requests, prompt_tokens, completion_tokens, usage_cost, finished_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
"""
_OUTCOME = """
INSERT INTO outcomes (task_id, event_id, passed, score, details, decided_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
"""
_SPEND = """
INSERT INTO spend (event_id, task_id, agent_id, part, requests, prompt_tokens, completion_tokens,
                   cost, seconds, cached_tokens)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING
"""

# A lean auction's winning draft is the task's execution, every other draft the auction's cost.
# Whichever of the draft and the close is projected second settles the part, so the order in
# which the two topics are read does not matter.
_DRAFT_SPEND = """
INSERT INTO spend (event_id, task_id, agent_id, part, requests, prompt_tokens, completion_tokens,
                   cost, seconds, cached_tokens)
VALUES ($1, $2, $3,
        CASE WHEN EXISTS (SELECT 1 FROM auctions WHERE winner_bid_id = $10) THEN 'execution'
             ELSE 'bids' END,
        $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING
"""
_DRAFT_WON = """
UPDATE spend SET part = 'execution'
WHERE event_id = (SELECT event_id FROM bids WHERE bid_id = $1)
"""

Write = tuple[str, tuple[Any, ...]]


async def project(conn: asyncpg.Connection, events: Iterable[Event]) -> None:
    """Updates the projections for `events`, one pipelined statement list per kind of write.

    Grouping by statement keeps the log order among writes of one kind, which is all the
    "first one wins" rules need; writes of different kinds touch different columns.
    """
    grouped: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for event in events:
        for statement, args in writes(event):
            grouped[statement].append(args)
    for statement, rows in grouped.items():
        await conn.executemany(statement, rows)


def writes(event: Event) -> list[Write]:
    """What one event changes in the projections (pure: the tests and replay can call it)."""
    at = _aware(event.occurred_at)
    match event:
        case TaskPosted():
            args = (event.task_id, event.kind, event.tenant, event.prompt, event.budget, at)
            return [(_TASK_POSTED, args)]
        case AuctionOpened():
            return [(_AUCTION_OPENED, (event.task_id, at, json.dumps(event.agents)))]
        case RefinementCalled():
            return [(_REFINEMENT_CALLED, _refinement_row(event, at))]
        case AuctionClosed() if event.lean is not None and event.winner_bid_id is not None:
            won = (_DRAFT_WON, (event.winner_bid_id,))
            return [(_AUCTION_CLOSED, _closed_row(event, at)), won]
        case AuctionClosed():
            return [(_AUCTION_CLOSED, _closed_row(event, at)), *_scored_bids(event)]
        case BidSubmitted() if event.examples_pass is not None:
            _, (event_id, task_id, agent_id, _part, *row) = _spend(
                event, event.agent_id, "bids", event.usage
            )
            drafted = (_DRAFT_SPEND, (event_id, task_id, agent_id, *row, event.bid_id))
            return [(_BID_SUBMITTED, _bid_row(event, at)), drafted]
        case BidSubmitted():
            part = "bids" if event.round == 0 else "refinement"
            spent = _spend(event, event.agent_id, part, event.usage)
            return [(_BID_SUBMITTED, _bid_row(event, at)), spent]
        case ReviewSubmitted():
            spent = _spend(event, event.juror, "jury", event.usage)
            return [(_REVIEW, _review_row(event, at)), spent]
        case SubmissionRejected():
            return [(_REJECTION, _rejection_row(event, at))]
        case TaskResult():
            spent = _spend(event, event.agent_id, "execution", event.usage)
            return [(_RESULT, _result_row(event, at)), spent]
        case TaskOutcome():
            args = (event.task_id, event.event_id, event.passed, event.score, event.details, at)
            return [(_OUTCOME, args)]
    return []  # TaskChecks, JuryCalled, AgentHeartbeat, DeadLetter: the log alone holds them


def _refinement_row(event: RefinementCalled, at: datetime) -> tuple[Any, ...]:
    return (
        event.task_id,
        at,
        event.provisional_bid_id,
        event.provisional_agent_id,
        event.provisional_score,
    )


def _closed_row(event: AuctionClosed, at: datetime) -> tuple[Any, ...]:
    return (
        event.task_id,
        at,
        event.reason,
        event.winner_agent_id,
        event.winner_bid_id,
        event.winning_plan,
        event.weights.model_dump_json(),
    )


def _scored_bids(event: AuctionClosed) -> list[Write]:
    return [
        (
            _BID_SCORED,
            (
                bid.bid_id,
                event.task_id,
                bid.agent_id,
                bid.round,
                bid.price,
                bid.plan_tokens,
                bid.entropy,
                json.dumps(bid.jury),
                bid.cost,
                bid.value,
                bid.score,
                bid.eligible,
                bid.ineligible_reason,
                bid.bid_id == event.winner_bid_id,
            ),
        )
        for bid in event.bids
    ]


def _bid_row(event: BidSubmitted, at: datetime) -> tuple[Any, ...]:
    return (
        event.bid_id,
        event.task_id,
        event.agent_id,
        event.round,
        event.price,
        event.plan_tokens,
        event.entropy,
        event.event_id,
        event.model,
        event.plan,
        json.dumps(event.memory_refs),
        *_usage(event.usage),
        at,
    )


def _review_row(event: ReviewSubmitted, at: datetime) -> tuple[Any, ...]:
    scores = {str(s.bid_id): s.score for s in event.scores}
    return (
        event.task_id,
        event.juror,
        event.round,
        event.event_id,
        json.dumps(scores),
        *_usage(event.usage),
        at,
    )


def _rejection_row(event: SubmissionRejected, at: datetime) -> tuple[Any, ...]:
    return (
        event.rejected_event_id,
        event.task_id,
        event.agent_id,
        event.submission,
        event.bid_id,
        event.reason,
        event.detail,
        at,
    )


def _result_row(event: TaskResult, at: datetime) -> tuple[Any, ...]:
    return (
        event.task_id,
        event.bid_id,
        event.agent_id,
        event.event_id,
        event.output,
        event.error,
        event.duration_s,
        event.cost,
        *_usage(event.usage),
        at,
    )


def _spend(event: Event, agent_id: str, part: str, usage: Usage) -> Write:
    """A spend row keeps the tokens by direction (prompt, of them held, generated), so that
    what a task spent can be priced again per direction (`sale report`)."""
    task_id = getattr(event, "task_id", "")
    row = (*_usage(usage), usage.seconds, usage.cached_tokens)
    return (_SPEND, (event.event_id, task_id, agent_id, part, *row))


def _usage(usage: Usage) -> tuple[int, int, int, float]:
    return (usage.requests, usage.prompt_tokens, usage.completion_tokens, usage.cost)


async def store(conn: asyncpg.Connection, batch: Sequence[Incoming]) -> int:
    """Appends a batch and projects what was new, in one transaction; returns how many were new."""
    async with conn.transaction():
        new = await append(conn, batch)
        await project(conn, (item.event for item in new))
    return len(new)


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
        self._pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=1)
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
            error = f"type: {decode(body).type} does not belong on the dlq stream"
        except EventDecodeError as exc:
            error = str(exc)
        digest = hashlib.sha256(body).hexdigest()
        where = f"{source.topic}/{source.partition}/{source.offset}/{digest}"
        return DeadLetter(
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, where),
            producer=self.bus.producer,
            source_topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            consumer_group=self.group,
            raw_key=source.key,
            raw_value=body,
            error=error[:MAX_REASON],
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
