"""Committing a consumer's offsets off its path, after what its records caused is in the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

if TYPE_CHECKING:
    from marketplace.shared.bus.door import Bus

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.2  # the most a crash makes a consumer read again, in time


class Committer:
    """Commits a consumer's offsets off its path: the consumer says what it has safely done
    (`want`) and goes on reading; a background task commits it, at most one commit in flight
    and one every `interval_s`, each covering everything wanted so far (a batch of records
    costs one commit, an idle consumer none).

    At least once: before committing, it waits for every record the bus sent until then to be
    acknowledged, so what a record caused is in the log before its offset is committed. A send
    that failed is kept in `failure` and nothing is committed from then on: the records are
    read again after a restart (the services are idempotent)."""

    def __init__(
        self,
        bus: Bus,
        group: str,
        consumer: Callable[[], AIOKafkaConsumer | None],
        interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self.bus = bus
        self.group = group
        self.interval_s = interval_s
        self.commit_s = 0.0  # how long the consumer last waited for a commit (the trace's)
        self.failure: BaseException | None = None
        self._consumer = consumer
        self._wanted: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._first: set[asyncio.Task] = set()

    def want(self, offsets: dict[TopicPartition, int]) -> None:
        """Offsets (next to read) that may be committed; committed soon, not now. A partition
        never committed here is committed at once: a group that starts from the end of a
        partition has no offset there to be read again from until its first commit."""
        self._wanted.update(offsets)
        if any(tp not in self._committed for tp in offsets):
            self._first.add(asyncio.create_task(self.flush()))
            self._first.difference_update([t for t in self._first if t.done()])
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(self.interval_s)

    async def flush(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commits now what is wanted (on `partitions`, default all), after any commit in
        flight; a commit that fails is logged and left: the records are read again."""
        async with self._lock:
            wanted = {
                tp: o
                for tp, o in self._wanted.items()
                if (partitions is None or tp in partitions) and self._committed.get(tp) != o
            }
            consumer = self._consumer()
            if not wanted or consumer is None or not await self._confirmed():
                return
            try:
                await consumer.commit(wanted)
            except KafkaError as exc:
                log.warning("%s: offset commit failed (%r): records are re-read", self.group, exc)
                return
            self._committed.update(wanted)

    async def _confirmed(self) -> bool:
        """Waits for the bus's unacknowledged sends; False once one of them has failed."""
        if self.failure is None:
            for sent in await asyncio.gather(*self.bus.unconfirmed(), return_exceptions=True):
                if isinstance(sent, BaseException):
                    log.error(
                        "%s: a record sent was not acknowledged (%r): offsets are no "
                        "longer committed, a restart reads again",
                        self.group,
                        sent,
                    )
                    self.failure = sent
        return self.failure is None

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._wanted.pop(tp, None)
            self._committed.pop(tp, None)

    async def close(self) -> None:
        """Commits what is wanted (the caller bounds how long: `PartitionedConsumer.stop`),
        then stops the background task."""
        await asyncio.gather(*self._first, return_exceptions=True)
        await self.flush()
        await self.cancel()

    async def cancel(self) -> None:
        """Stops committing, with nothing more: the background task and any first commit
        still waiting (on a broker that is gone, say) are abandoned."""
        tasks = [t for t in (self._task, *self._first) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._first.clear()
