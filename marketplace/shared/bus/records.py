"""What a consumer hands over: a record's place in the log (`Source`), the record as read
(`Delivery`), and the trace stamp that follows a record from the one it answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from schemas.events import Event


@dataclass(frozen=True)
class Source:
    """Where a delivered event was read: its position is its identity in the log."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()  # the signature travels here (shared.signing)


def source_of(record: Any) -> Source:
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
    skipped: bool = False  # addressed to another agent: not read at all (`bus.addressed`)


Handler = Callable[[Event, Source], Awaitable[None]]

# `[broker] trace`: each record published carries, in this header, when it was sent and the
# timings of the record it answers (`Stamp`), so one auction can be followed hop by hop
# (`sale loadtest --trace`, marketplace.performance.trace).
# Off by default: it costs bytes per record.
TRACE_HEADER = "sale-trace"
Stamp = dict[str, Any]

# The stamp of the record a handler is answering: what the bus sends meanwhile carries it.
answering: ContextVar[Stamp | None] = ContextVar("sale_answering", default=None)


def stamp_of(source: Source, free: float, fetched: float, commit_s: float) -> Stamp:
    """What a consumer knows of a record it answers: where it was read, since when the consumer
    was free to read it (after its previous record and commit), when it had it, and how long
    the commit before that took; all by `time.time()`, comparable across local processes."""
    cause = [source.topic, source.partition, source.offset]
    return {"cause": cause, "free": free, "fetched": fetched, "commit": commit_s}
