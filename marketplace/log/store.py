"""The event log in Postgres: what goes in, what comes out.

Every event is appended to `events` once: the unique event id refuses one already there (a
redelivery), whatever its Kafka position (a new broker numbers its offsets from 0 again while
the log lives on). A batch is appended and its new events projected in one transaction, so the
projections never disagree with the log. Replay and audit read the log back as `StoredEvent`s.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from marketplace.core.clock import aware
from marketplace.log.projections import project
from schemas.codec import decode
from schemas.events import Event


@dataclass(frozen=True)
class Position:
    """Where a record sat in Kafka, kept with it in the log (its identity is its event id:
    positions start again on a new broker)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Incoming:
    """A record to append: its position, its key, the event it holds and that event as JSON,
    and the key id and signature it was signed with (None: unsigned)."""

    position: Position
    key: bytes | None
    event: Event
    payload: str
    key_id: str | None = None
    signature: bytes | None = None

    @classmethod
    def of(
        cls,
        position: Position,
        key: bytes | None,
        event: Event,
        key_id: str | None = None,
        signature: bytes | None = None,
    ) -> Incoming:
        """Serialises once. Any NUL character becomes U+FFFD: Postgres text and jsonb refuse
        NUL, and one LLM output holding one must not stop the log."""
        payload = event.model_dump_json()
        if "\\u0000" in payload:
            payload = json.dumps(_without_nul(json.loads(payload)))
            event = type(event).model_validate_json(payload)
        return cls(position, key, event, payload, key_id, signature)


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
                    producer, occurred_at, payload, key_id, signature)
SELECT topic, partition, "offset", key, type, event_id, task_id, agent_id,
       producer, occurred_at, payload::json, key_id, signature
FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::text[], $6::uuid[],
            $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[],
            $12::text[], $13::bytea[])
     AS r(topic, partition, "offset", key, type, event_id, task_id, agent_id,
          producer, occurred_at, payload, key_id, signature)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


async def append(conn: asyncpg.Connection, batch: Sequence[Incoming]) -> list[Incoming]:
    """Appends the batch in one statement; returns the records whose event was not there yet
    (once each, in batch order)."""
    firsts: dict[uuid.UUID, Incoming] = {}
    for item in batch:
        firsts.setdefault(item.event.event_id, item)
    columns: list[list[Any]] = [[] for _ in range(13)]
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
        aware(event.occurred_at),
        item.payload,
        item.key_id,
        item.signature,
    )


async def store(conn: asyncpg.Connection, batch: Sequence[Incoming]) -> int:
    """Appends a batch and projects what was new, in one transaction; returns how many were new."""
    async with conn.transaction():
        new = await append(conn, batch)
        await project(conn, (item.event for item in new))
    return len(new)
