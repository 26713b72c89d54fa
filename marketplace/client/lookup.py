"""Reading one task from the log, later: `result(config, task_id)` is what `sale result` and
`Client.result` print. It needs no key of its own: it only reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from marketplace.client.records import trusted
from marketplace.client.waiting import POLL_MS, STREAMS
from marketplace.log.outcomes import Outcome, fold
from marketplace.shared import signing
from marketplace.shared.bus import reader
from marketplace.shared.config import BrokerConfig, Config
from marketplace.shared.offsets import highwater_marks
from schemas.events import Event
from schemas.topics import Topics

LOG_STREAMS = ("tasks", *STREAMS)  # what `result` reads when it reads the topics
READ_TIMEOUT_S = 60.0  # reading one task's part of the topics


async def result(
    config: Config, task_id: str, trust: signing.Trust | None = None
) -> Outcome | None:
    """The task's outcome so far from the log: Postgres where the recorder keeps it (when
    `[database].url` is set), else the topics, whose records are checked against `trust`
    (default: the process's). What Postgres holds of a task that has not ended there is
    completed from the topics: the recorder lags the streams a client waits on, so right after
    `--wait` said `answered` it may hold the award and not yet the answer. None: the task is
    unknown."""
    stored: list[Event] = []
    if config.database.url:
        stored = await _from_postgres(config.database.url, task_id)
        outcome = fold(task_id, stored)
        if outcome is not None and outcome.final:
            return outcome
    trust = trust or signing.current()
    try:
        streamed = await read_key(config.broker, trust, task_id, LOG_STREAMS)
    except (KafkaError, OSError, TimeoutError):
        if not stored:
            raise
        streamed = []  # the broker away: what Postgres holds is what is known
    return fold(task_id, list({e.event_id: e for e in [*stored, *streamed]}.values()))


async def _from_postgres(url: str, task_id: str) -> list[Event]:
    import asyncpg

    from marketplace.log.store import load_events

    conn = await asyncpg.connect(url)
    try:
        return [row.event for row in await load_events(conn, task_id)]
    except asyncpg.UndefinedTableError:
        return []  # no log yet: the recorder has not run
    finally:
        await conn.close()


async def read_key(
    config: BrokerConfig, trust: signing.Trust, key: str, streams: Sequence[str]
) -> list[Event]:
    """The events of one key on `streams`, from offset 0 to the end as it is now. Records of a
    key land in the partition the producer's partitioner gives it, so only that one is read."""
    topics = Topics(config.topic_prefix)
    names = [getattr(topics, s) for s in streams]
    ends = await highwater_marks(config.bootstrap, names)
    partitioner = DefaultPartitioner()
    wanted: dict[TopicPartition, int] = {}
    for name in names:
        parts = sorted(tp.partition for tp in ends if tp.topic == name)
        if parts:
            tp = TopicPartition(name, partitioner(key.encode(), parts, parts))
            if ends[tp] > 0:
                wanted[tp] = ends[tp]
    if not wanted:
        return []
    consumer = await reader(config)
    events: list[Event] = []
    try:
        consumer.assign(list(wanted))
        await consumer.seek_to_beginning(*wanted)
        async with asyncio.timeout(READ_TIMEOUT_S):
            keep = partial(trusted, trust, config.max_record_bytes)
            await _read_until(consumer, key, wanted, keep, events)
    finally:
        await consumer.stop()
    return list({e.event_id: e for e in events}.values())  # an event sent again: once


async def _read_until(
    consumer: AIOKafkaConsumer,
    key: str,
    wanted: dict[TopicPartition, int],
    keep: Callable[[ConsumerRecord], Event | None],
    events: list[Event],
) -> None:
    left = dict(wanted)
    while left:
        for tp, records in (await consumer.getmany(timeout_ms=POLL_MS)).items():
            for record in records:
                mine = record.offset < wanted[tp] and record.key == key.encode()
                if mine and (event := keep(record)) is not None:
                    events.append(event)
        for tp in list(left):
            if await consumer.position(tp) >= left[tp]:
                del left[tp]
