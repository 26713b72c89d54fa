"""The readers of the log replay works from: the Postgres log in recorded order, or the
broker's streams from offset 0 up to their current end (`read` picks by the config).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from marketplace.log.replay.replayed_log import (
    NO_LOG,
    STREAMS,
    TYPES,
    Log,
    LogUnavailable,
    decoded,
)
from marketplace.shared.bus import reader
from marketplace.shared.config import BrokerConfig, Config, ConfigError, unset
from marketplace.shared.offsets import highwater_marks
from schemas.topics import Topics

STALL_S = 30.0


async def read(config: Config, from_kafka: bool = False) -> Log:
    """The log from where the config points: Postgres, or the broker's streams."""
    if from_kafka:
        if not config.broker.bootstrap:
            raise ConfigError(unset("broker", "bootstrap"))
        return await read_kafka(config.broker)
    if not config.database.url:
        raise ConfigError(f"{unset('database', 'url')}; which database?")
    return await read_postgres(config.database.url)


async def read_postgres(url: str) -> Log:
    """The replay's part of the log in recorded order; a row that no longer decodes is a
    discrepancy (the recorder stores only valid events), not a crash."""
    rows = await fetch_log(url, _REPLAYED, list(TYPES))
    return decoded("postgres", ((r["task_id"] or "?", stored_at(r), r["payload"]) for r in rows))


_REPLAYED = "SELECT id, task_id, payload FROM events WHERE type = ANY($1::text[]) ORDER BY id"


async def fetch_log(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """Rows of the log (LogUnavailable if there is none)."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    except asyncpg.UndefinedTableError:
        raise LogUnavailable(NO_LOG) from None
    finally:
        await conn.close()


def stored_at(row: asyncpg.Record) -> str:
    return f"payload of events.id {row['id']}"


async def read_kafka(broker: BrokerConfig, streams: Sequence[str] = STREAMS) -> Log:
    """The streams from offset 0 up to their current end, with a consumer of no group: the
    replay neither commits nor takes partitions from anyone."""
    topics = Topics(broker.topic_prefix)
    ends = await highwater_marks(broker.bootstrap, [getattr(topics, s) for s in streams])
    wanted = {tp: end for tp, end in ends.items() if end > 0}
    consumer = await reader(broker)
    try:
        records = await _read_until(consumer, wanted) if wanted else []
    finally:
        await consumer.stop()
    # A malformed record elsewhere was dead-lettered where it arrived; one on `auctions`, the
    # auctioneer's own decisions, is a discrepancy.
    log = decoded("kafka", (_row(r) for r in records if r.topic == topics.auctions))
    rest = decoded("kafka", (_row(r) for r in records if r.topic != topics.auctions))
    return Log("kafka", log.events + rest.events, log.unreadable)


def _row(record: ConsumerRecord) -> tuple[str, str, bytes]:
    task_id = (record.key or b"?").decode(errors="replace")
    return task_id, f"{record.topic}[{record.partition}]@{record.offset}", record.value or b""


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> list[ConsumerRecord]:
    consumer.assign(list(ends))
    await consumer.seek_to_beginning(*ends)
    records: list[ConsumerRecord] = []
    progress = time.monotonic()
    while any([await consumer.position(tp) < end for tp, end in ends.items()]):
        fetched = await consumer.getmany(timeout_ms=200)
        for tp, batch in fetched.items():
            records += [r for r in batch if r.offset < ends[tp]]
            progress = time.monotonic() if batch else progress
        if time.monotonic() - progress > STALL_S:
            raise LogUnavailable(f"no records for {STALL_S:.0f}s before the end of the streams")
        await asyncio.sleep(0)
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
