"""Addressed delivery: where an agent's inbox records go, and telling them apart before decoding.

The inbox (`schemas.topics.INBOX`, docs/delivery.md) holds copies of the events that ask
something of one agent, keyed by its id: Kafka's default partitioner puts them on partition
`murmur2(id) & 0x7fffffff % partitions` (Java's and aiokafka's alike), and the agent reads that
partition alone, by manual assignment. Several agents share a partition; each record names its
addressee in the `sale-to` header, so an agent skips its neighbours' records without decoding
or checking a signature. The copy is the record of record, value and signature headers as they
were, plus that header (not signed: it routes, it vouches for nothing; a record sent to the
wrong agent is an event that agent ignores, as it would have on the shared streams).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from schemas.topics import ADDRESSEE_HEADER

Headers = tuple[tuple[str, bytes], ...]


def inbox_partition(agent_id: str, partitions: int) -> int:
    """The inbox partition of `agent_id` when the inbox has `partitions`: what the producer's
    default partitioner picks for the key (murmur2 of its UTF-8 bytes, made positive, modulo
    the count)."""
    return (murmur2(agent_id.encode()) & 0x7FFFFFFF) % partitions


def addressee(headers: Iterable[tuple[str, bytes]]) -> str | None:
    """The agent a record is addressed to (its `sale-to` header), or None."""
    for name, value in headers:
        if name == ADDRESSEE_HEADER:
            return value.decode(errors="replace")
    return None


def addressed(headers: Iterable[tuple[str, bytes]], agent_id: str) -> Headers:
    """The headers of a copy for `agent_id`: the original's (its signature), and the address."""
    kept = tuple((n, v) for n, v in headers if n != ADDRESSEE_HEADER)
    return (*kept, (ADDRESSEE_HEADER, agent_id.encode()))


@dataclass(frozen=True)
class Letter:
    """A record to copy to agents' inboxes: its value and headers as published, and to whom."""

    value: bytes
    headers: Headers
    to: tuple[str, ...]
