"""Waiting for an answer: one reader of the answer streams for the client's life.

It is a reader of no consumer group (`shared.bus.reader`), placed at the end of `bids`,
`reviews`, `auctions`, `results` and `outcomes` (and the dead letters) when the client starts,
before anything is posted, so no answer can slip by; it commits nothing and joins no group, so
it leaves no offsets behind and takes no partition from a service. It keeps only the events of
the tasks being waited for, each checked against the keyring like any consumer's (a record it
cannot believe is skipped; the services dead-letter it), and folds them into an `Outcome`
(`marketplace.log.outcomes`, the same fold `lookup.result` reads the log with).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from uuid import UUID

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from marketplace.client.errors import InvalidTask, Refused, SubmitError, SubmitTimeout
from marketplace.client.records import trusted
from marketplace.log.outcomes import Outcome, complete, fold
from marketplace.shared.bus import Bus, reader
from marketplace.shared.offsets import highwater_marks
from schemas.events import DeadLetter, Event, TaskPosted
from schemas.topics import Topics

log = logging.getLogger("client")
STREAMS = ("bids", "reviews", "auctions", "results", "outcomes")  # what an answer is made of
POLL_MS = 100


@dataclass
class _Watched:
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    dead: DeadLetter | None = None  # the task itself refused on arrival (e.g. its id was taken)
    ids: set[UUID] = field(default_factory=set)  # of `events`: one sent again is not kept twice


class Watch:
    """One reader of the answer streams, from their end at start, for the tasks waited for."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.topics = Topics(bus.config.topic_prefix)
        self._tasks: dict[str, _Watched] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._reading: asyncio.Task | None = None
        self._failed: BaseException | None = None

    async def start(self) -> None:
        names = [getattr(self.topics, s) for s in (*STREAMS, "dlq")]
        ends = await highwater_marks(self.bus.config.bootstrap, names)
        self._consumer = await reader(self.bus.config)
        self._consumer.assign(list(ends))
        for tp, end in ends.items():
            self._consumer.seek(tp, end)
        self._reading = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading
        if self._consumer is not None:
            await self._consumer.stop()

    @contextlib.contextmanager
    def watching(self, task: TaskPosted) -> Iterator[None]:
        """Keeps the task's events while the block runs (the task itself first, as the client
        knows it), and forgets them after."""
        task_id = task.task_id
        if task_id in self._tasks:
            raise InvalidTask(f"task {task_id} is already being waited for", task_id)
        self._tasks[task_id] = _Watched([task])
        try:
            yield
        finally:
            del self._tasks[task_id]

    async def wait(self, task_id: str, timeout_s: float) -> Outcome:
        """The task's final outcome; `SubmitTimeout` with the outcome so far when it is late."""
        watched = self._tasks[task_id]
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    watched.changed.clear()
                    if self._failed is not None:
                        raise SubmitError(
                            f"task {task_id}: watching for its answer failed: {self._failed!r}",
                            task_id,
                            fold(task_id, watched.events),
                        )
                    if watched.dead is not None:
                        raise _refused_on_arrival(task_id, watched.dead)
                    if complete(task_id, watched.events):
                        return fold(task_id, watched.events)
                    await watched.changed.wait()
        except TimeoutError:
            raise SubmitTimeout(task_id, timeout_s, fold(task_id, watched.events)) from None

    async def _read(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=POLL_MS)
                for records in batches.values():
                    for record in records:
                        self._take(record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broker gone: every waiter hears of it
            log.exception("client: reading the answer streams failed")
            self._failed = exc
            for watched in self._tasks.values():
                watched.changed.set()

    def _take(self, record: ConsumerRecord) -> None:
        if record.topic == self.topics.dlq:
            self._take_dead_letter(record)
            return
        task_id = (record.key or b"").decode(errors="replace")
        watched = self._tasks.get(task_id)
        if watched is None:
            return
        event = trusted(self.bus.trust, self.bus.config.max_record_bytes, record)
        if event is not None and event.event_id not in watched.ids:  # a replay counts once
            watched.ids.add(event.event_id)
            watched.events.append(event)
            watched.changed.set()

    def _take_dead_letter(self, record: ConsumerRecord) -> None:
        """A service refused one of the tasks waited for as it arrived (its id already taken,
        say): nothing more will come of it, so its waiter hears why at once."""
        letter = trusted(self.bus.trust, self.bus.config.max_record_bytes, record)
        if not isinstance(letter, DeadLetter) or letter.source_topic != self.topics.tasks:
            return
        watched = self._tasks.get((letter.raw_key or b"").decode(errors="replace"))
        if watched is not None and str(watched.events[0].event_id).encode() in letter.raw_value:
            watched.dead = letter
            watched.changed.set()


def _refused_on_arrival(task_id: str, letter: DeadLetter) -> Refused:
    outcome = Outcome(task_id=task_id, status="refused", reason="rejected", detail=letter.error)
    return Refused(outcome)
