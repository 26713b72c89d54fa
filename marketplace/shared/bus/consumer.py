"""The one consumer of a group: `PartitionedConsumer`, polled by a service's own loop or run
with a handler per event (`run`, what `Bus.subscribe` does).

Either way a record goes the same path: fetched, read again if its fetch skipped an offset
(`Rereads`), decoded and signature-checked or dead-lettered by the bus, handed over, and its
offset committed only once it is done with (`Committer`).

An agent's consumer is addressed (`addressee`): it reads its one inbox partition, assigned by
hand, and skips the records its `sale-to` header addresses to another agent before anything
reads them (`bus.addressed`, docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from marketplace.shared.bus.addressed import addressee, inbox_partition
from marketplace.shared.bus.commits import Committer
from marketplace.shared.bus.reader import caught_up, new_consumer, partitions_of
from marketplace.shared.bus.records import Delivery, Handler, Stamp, answering, source_of, stamp_of
from marketplace.shared.bus.rereads import Rereads
from marketplace.shared.kafka_auth import client_options
from marketplace.shared.stopping import COMMIT_S, HANDLER_S, LEAVE_S, within

if TYPE_CHECKING:
    from marketplace.shared.bus.door import Bus

log = logging.getLogger(__name__)

RUN_POLL_S = 0.1  # the longest `run` waits on an idle fetch before looking at its stop flag
RUN_RETRY_S = 1.0  # after a fetch that failed, before the next
# An addressed consumer's one partition is quiet most of the time (an agent is called now and
# then): it waits on the broker at least this long per fetch, so a thousand idle agents are not
# a thousand fetches every `fetch_max_wait_ms`. A broker answers a waiting fetch when a record
# comes (Tansu at intervals: so not longer).
ADDRESSED_WAIT_MS = 200
DRAIN_S = HANDLER_S  # how long stopping waits for a handler that is running
# An addressed consumer commits past records addressed to others at most this often: with many
# agents on a busy partition, a commit per agent per `COMMIT_INTERVAL_S` for records none of
# them read would make the offsets topic the busiest; a restart re-reads (skips) at most this.
SKIPPED_COMMIT_S = 5.0


class PartitionOwner(Protocol):
    """A service that keeps state per partition: it must commit and forget a partition taken
    from it. It may also define `async def adopted(partitions)`, awaited when partitions are
    assigned, before any of their records is delivered (to recall what came before the
    committed offsets)."""

    async def revoked(self, partitions: set[TopicPartition]) -> None: ...


class PartitionedConsumer:
    """A member of a consumer group that commits by hand: the one way anything in the
    marketplace reads a stream as a group member.

    It does the partition protocol the services share: range assignment, so partition p of every
    stream goes to the same member (co-partitioning by task id); each record decoded, or
    dead-lettered, through the bus; the next offset to read per partition, advanced only once
    the caller has taken the record; which assigned partitions are still catching up with the log
    as it was when they were assigned (a service decides nothing there before); and a commit that
    skips what is already committed and survives a failed commit (the records are re-read, and
    every reader is idempotent). `owner` hears of partitions revoked, to commit and forget them;
    what was wanted committed there is committed before they go.

    `from_start`: a group with no committed offset reads each topic from its first record;
    otherwise from the end (an agent joins the next auction, not the history).

    `addressee`: an agent's id. The consumer then joins no group (it commits under its name,
    as a group of one that never rebalances): it is assigned the one partition of each stream
    the id hashes to (`inbox_partition`), and a record whose `sale-to` header names anyone
    else is skipped, unread (`skipped`, `skipped_bytes`), and committed past.
    """

    def __init__(
        self,
        bus: Bus,
        streams: Iterable[str],
        group: str,
        owner: PartitionOwner | None = None,
        *,
        from_start: bool = True,
        addressee: str | None = None,
    ) -> None:
        self.bus = bus
        self.group = bus.group(group)
        self.owner = owner
        self.from_start = from_start
        self.addressee = addressee
        self.skipped = 0  # records addressed to others, not decoded (an addressed consumer's)
        self.skipped_bytes = 0
        self.topics = [bus.topics.prefix + s for s in streams]
        self.next_offsets: dict[TopicPartition, int] = {}
        self.catching_up: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self.committer = Committer(bus, self.group, lambda: self._consumer)
        self.free = time.time()  # when the last poll began: the consumer was free to read
        self.rereads = Rereads(self.group)
        self.stopping = asyncio.Event()  # `run` takes no more records once set
        self._skips_wanted = 0.0  # when committing past skipped records was last wanted
        self._skips: dict[TopicPartition, int] = {}  # skipped, not yet wanted committed

    async def start(self) -> None:
        config = self.bus.config
        self.stopping.clear()
        self._consumer = new_consumer(
            config.bootstrap,
            group_id=self.group,
            client_id=self.bus.producer,
            auto_offset_reset="earliest" if self.from_start else "latest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            fetch_max_wait_ms=max(
                config.fetch_max_wait_ms, ADDRESSED_WAIT_MS if self.addressee else 0
            ),
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
            **client_options(config),
        )
        if self.addressee is None:
            self._consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self._consumer.start()
        if self.addressee is not None:
            own = await self.own_partitions()
            if len(own) != len(self.topics):
                raise RuntimeError(f"{self.group}: the broker lacks one of {self.topics}")
            self._consumer.assign(own)

    async def own_partitions(
        self, metadata: AIOKafkaConsumer | None = None
    ) -> list[TopicPartition]:
        """An addressed consumer's partitions: per stream, the one its addressee hashes to,
        modulo the stream's partition count as the cluster has it (what the producer's
        partitioner uses, whatever the configuration says). `metadata`: a started consumer
        to ask the cluster with (default: this one). A topic the cluster lacks has none."""
        own = []
        for topic in self.topics:
            if count := len(await partitions_of(metadata or self._consumer, [topic])):
                own.append(TopicPartition(topic, inbox_partition(self.addressee, count)))
        return own

    async def stop(self) -> None:
        """Commits what was done and leaves the group, each within its bound (`stopping`): a
        broker that is gone costs a stop at most `COMMIT_S` + `LEAVE_S`."""
        await within(self.committer.close(), COMMIT_S, f"{self.group}: the last commit")
        await within(self.committer.cancel(), LEAVE_S, f"{self.group}: its commits in flight")
        if self._consumer is not None:
            await within(self._consumer.stop(), LEAVE_S, f"{self.group}: leaving the group")

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def position(self, tp: TopicPartition) -> int:
        return await self._consumer.position(tp)

    def pause(self, partitions: set[TopicPartition]) -> None:
        """Stops fetching from `partitions` (assigned ones): their records wait on the topic."""
        self._consumer.pause(*(partitions & self.assignment()))

    def resume(self, partitions: set[TopicPartition]) -> None:
        self._consumer.resume(*(partitions & self.assignment()))

    def ready_partitions(self) -> set[int]:
        """The partitions (by number) assigned and caught up: where the service may decide."""
        assigned = {tp.partition for tp in self.assignment()}
        return assigned - {tp.partition for tp in self.catching_up}

    # --- reading ---------------------------------------------------------------------------

    async def poll(
        self, timeout_s: float, max_records: int | None = None
    ) -> AsyncIterator[Delivery]:
        """The records of one fetch, in order per partition. A record's offset counts as read
        once the caller asks for the next one, so a record being handled is never committed."""
        self.free = time.time()
        fetched = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records
        )
        now = time.time()
        kept = [
            (tp, record) for tp, records in fetched.items() for record in self._kept(tp, records)
        ]
        mine = [self._for_me(record) for _, record in kept]
        bodies = [
            (r.value if r.value is not None else b"", source_of(r))
            for (_, r), read in zip(kept, mine, strict=True)
            if read
        ]
        events = iter(await self.bus.receive_many(bodies, self.group))
        received = iter(bodies)
        for (tp, record), read in zip(kept, mine, strict=True):
            if read:
                body, source = next(received)
                yield Delivery(next(events), source, body, now)
            else:  # another agent's: no event, nothing to dead-letter, committed past
                yield Delivery(None, source_of(record), b"", now, skipped=True)
            self.next_offsets[tp] = record.offset + 1

    def _for_me(self, record: Any) -> bool:
        """Whether a record is to be read: any, unless this consumer is addressed and the
        record's `sale-to` header names another agent (or none: a copy always names one)."""
        if self.addressee is None or addressee(record.headers or ()) == self.addressee:
            return True
        self.skipped += 1
        self.skipped_bytes += len(record.value or b"")
        return False

    def _kept(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """The records of a fetch up to any offset it skipped (`Rereads`)."""
        expected = self.next_offsets.get(tp)
        for i, record in enumerate(records):
            if expected is not None and self.rereads.skipped(self._consumer, tp, expected, record):
                return records[:i]  # read again from the first missing offset, next fetch
            expected = record.offset + 1
        return records

    async def run(self, handler: Handler) -> None:
        """Calls `handler` for each event, one at a time, until `stopping` is set; each record
        is committed (soon) once its handler has returned, so a crash means redelivery, never
        loss. A handler that fails dead-letters its record, and the next one is handled: one
        record never stops the consumer; nor does a fetch that fails (it is tried again)."""
        while not self.stopping.is_set():
            try:
                await self._run_once(handler)
            except Exception:
                log.exception("%s: a fetch failed; trying again", self.group)
                await asyncio.sleep(RUN_RETRY_S)

    async def _run_once(self, handler: Handler) -> None:
        idle = True
        async with contextlib.aclosing(self.poll(RUN_POLL_S)) as deliveries:
            async for delivery in deliveries:
                idle = False
                if self.stopping.is_set():
                    return  # not handled, not committed: the group's next member reads it
                if delivery.event is not None:
                    await self._handle(handler, delivery)
                source = delivery.source
                done = {TopicPartition(source.topic, source.partition): source.offset + 1}
                if delivery.skipped and not self._skips_due():
                    self._skips.update(done)  # committed with the next record read, or soon
                else:
                    self.committer.want(done)
                    self._skips.clear()
                self.free = time.time()  # free for the next record (the trace's `free`)
        if idle and self._skips:  # a quiet partition: nothing left uncommitted behind
            self.committer.want(self._skips)
            self._skips = {}

    def _skips_due(self) -> bool:
        """Whether committing past a skipped record is due (`SKIPPED_COMMIT_S`)."""
        now = time.monotonic()
        if now - self._skips_wanted < SKIPPED_COMMIT_S:
            return False
        self._skips_wanted = now
        return True

    async def _handle(self, handler: Handler, delivery: Delivery) -> None:
        """Calls the handler with the delivery's stamp as the record answered; one that fails
        dead-letters the record."""
        event, source = delivery.event, delivery.source
        cause = answering.set(self.stamp(delivery))
        try:
            await handler(event, source)
        except Exception as exc:
            log.exception("%s failed on %s at %s", self.group, event.type, source)
            await self.bus.dead_letter(
                source, delivery.body, self.group, f"handler failed: {exc!r}"
            )
        finally:
            answering.reset(cause)

    async def drain(self, running: asyncio.Task | None) -> None:
        """Takes no more records, lets the handler in hand (`running`, the task of `run`)
        finish for up to `DRAIN_S`, commits what was handled and leaves the group."""
        self.stopping.set()
        if self._consumer is not None:
            self._consumer.pause(*self._consumer.assignment())
        if running is not None:
            await within(asyncio.shield(running), DRAIN_S, f"{self.group}: the handler in hand")
            running.cancel()  # a handler still running is handed back: not committed
            await within(_cancelled(running), LEAVE_S, f"{self.group}: cancelling its handler")
        await self.stop()

    # --- partitions, catching up, committing -----------------------------------------------

    async def caught_up(self) -> list[int]:
        """Checks the partitions still catching up; returns the numbers of those whose every
        stream has now caught up."""
        done = []
        for tp in list(self.catching_up):
            if await caught_up(self._consumer, [tp]):
                self.catching_up.discard(tp)
                if not any(c.partition == tp.partition for c in self.catching_up):
                    done.append(tp.partition)
        return done

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commits `offsets` now (what is not committed already), once every record the bus
        sent before is acknowledged."""
        self.committer.want(offsets)
        start = time.time()
        await self.committer.flush(set(offsets))
        self.committer.commit_s = time.time() - start

    def commit_soon(self, offsets: dict[TopicPartition, int]) -> None:
        """Commits `offsets` off the caller's path, within `COMMIT_INTERVAL_S` (`Committer`)."""
        self.committer.want(offsets)

    def stamp(self, delivery: Delivery) -> Stamp:
        """The trace stamp of a delivery this consumer polled (see `TRACE_HEADER`)."""
        return stamp_of(delivery.source, self.free, delivery.fetched, self.committer.commit_s)

    def assigned(self, partitions: set[TopicPartition]) -> None:
        log.info(
            "%s assigned %s",
            self.group,
            sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions),
        )
        self.catching_up |= partitions

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """The owner commits what it safely can and forgets the partitions; what was wanted
        committed there is, before they go to another member; then they are forgotten."""
        if self.owner is not None:
            await self.owner.revoked(partitions)
        await self.committer.flush(partitions)
        self.committer.forget(partitions)
        for tp in partitions:
            self.next_offsets.pop(tp, None)
            self.catching_up.discard(tp)


async def _cancelled(task: asyncio.Task) -> None:
    """Waits for a task told to cancel (a handler may take a moment to unwind)."""
    with contextlib.suppress(asyncio.CancelledError):
        await task


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, consumer: PartitionedConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.consumer.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.consumer.assigned(set(assigned))
        adopted = getattr(self.consumer.owner, "adopted", None)
        if adopted is not None:
            await adopted(set(assigned))
