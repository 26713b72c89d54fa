"""Running an agent as a service: it hears what is addressed to it, and publishes its answers.

An agent reads only its inbox (docs/delivery.md): the one partition of the `inbox` stream its
id hashes to, assigned by hand, where the auctioneer copies the tasks it is asked to bid on and
the calls, juries, refinements and awards addressed to it. The records of the other agents that
share the partition are skipped by their `sale-to` header, never decoded nor checked. Offsets
are committed under `agent.<id>`, a group of one that never rebalances: agents coming and going
elsewhere cost it nothing. A new agent starts from the end of its partition: it joins the next
auction, not the history. Heartbeats announce it at start and periodically, and `left` on the
way out, so the auctioneer stops waiting for it.

One process per agent id: replicas of one id would both read the partition and both answer
every call (each its own bid). To share an agent's work run more agent ids; a standby of an id
may be started once the first is gone, and takes over from its committed offset.

A restarted agent resumes after its committed offset, so what it had already read is not
delivered again; before it resumes it re-reads the last of those records (`recall`), so the
tasks of the calls, juries and awards still to come are known to it again.

Each event is answered once (`agents.handled`): once an answer is sent, the event's id is
kept (in `state`, a file, when given: `sale agent` keeps it under the agent's `state_dir`), so
a replay of it — a captured record sent again, or one redelivered after a crash — changes
nothing. It is kept only once the answer is acknowledged, so an agent killed mid-answer still
answers after its restart; a crash between the acknowledgement and the keeping answers twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from agents.handled import Handled, utc_now
from marketplace.shared import signing
from marketplace.shared.bus import Bus, Source, addressee, reader
from marketplace.shared.offsets import committed_offsets
from marketplace.shared.stopping import LEAVE_S, within
from schemas.codec import EventDecodeError, decode
from schemas.events import AgentHeartbeat, Event
from schemas.topics import INBOX

log = logging.getLogger("agent")
STREAMS = (INBOX,)
# Read back at start, before the committed offset of the inbox partition. The partition is
# shared with other agents (skipped by header, not decoded), so this is more than one agent's
# own records: enough for the open auctions of a busy partition.
RECALL_RECORDS = 5000
RECALL_TIMEOUT_S = 30.0


class Agent(Protocol):
    agent_id: str
    handled: Handled

    def heartbeat(self, status: str = "up") -> AgentHeartbeat: ...

    async def respond(self, event: Event) -> list[Event]: ...

    def answered(self, event: Event) -> None:
        """The answer to `event` is sent: it is not to be answered again."""
        ...

    def recall(self, event: Event) -> None:
        """Takes in an event this agent read before it restarted, answering nothing."""
        ...


class AgentService:
    def __init__(
        self, agent: Agent, bus: Bus, heartbeat_s: float = 5.0, state: Path | None = None
    ) -> None:
        """`heartbeat_s` must stay well under the auctioneer's `heartbeat_ttl_s`; `state`: the
        file of the event ids answered (none: they last as long as the process)."""
        self.agent = agent
        self.state = state
        self.bus = bus
        self.heartbeat_s = heartbeat_s
        self.group = f"agent.{agent.agent_id}"
        self.consumer = bus.subscribe(
            STREAMS, self.group, self._on_event, from_start=False, addressee=agent.agent_id
        )
        self._beating: asyncio.Task | None = None

    async def _on_event(self, event: Event, source: Source) -> None:
        """Publishes each answer and waits for the broker's acknowledgement: sent without
        waiting, a record queued behind one in flight to the same partition was seen to stay
        unsent until the producer's next send (aiokafka 0.14), and an auction to wait for it."""
        for answer in await self.agent.respond(event):
            await self.bus.publish(answer)
        self.agent.answered(event)

    async def _beat(self) -> None:
        await self.bus.joined()  # announce ourselves only once we can hear the next task
        while True:
            await self.bus.publish(self.agent.heartbeat("up"))
            await asyncio.sleep(self.heartbeat_s)

    async def start(self) -> None:
        if self.state is not None:
            kept = self.agent.handled.keep_in(self.state, utc_now())
            log.info("%s: %d events answered before this start (%s)", self.group, kept, self.state)
        await self._recall()  # before the subscription hands over anything new
        await self.bus.start()
        self._beating = asyncio.create_task(self._beat())

    async def _recall(self) -> None:
        """Feeds the agent the last records addressed to it before this start: those among
        the `RECALL_RECORDS` before the committed offset of its inbox partition. A new group
        has none."""
        consumer = await reader(self.bus.config, auto_offset_reset="earliest")
        try:
            ends = await self._committed(consumer)
            if ends:
                async with asyncio.timeout(RECALL_TIMEOUT_S):
                    recalled = await self._read_back(consumer, ends)
                log.info("%s: recalled %d events read before this start", self.group, recalled)
        except TimeoutError:
            log.warning(
                "%s: recall stopped after %ss: some tasks may be unknown",
                self.group,
                RECALL_TIMEOUT_S,
            )
        finally:
            await consumer.stop()

    async def _committed(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        parts = await self.consumer.own_partitions(consumer)  # none on a new broker
        group = self.bus.group(self.group)
        committed = await committed_offsets(self.bus.config.bootstrap, group, parts)
        ends = {tp: offset for tp, offset in committed.items() if offset > 0}
        if ends:
            consumer.assign(list(ends))
            for tp, end in ends.items():
                consumer.seek(tp, max(0, end - RECALL_RECORDS))
        return ends

    async def _read_back(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> int:
        """Reads each partition up to its committed offset (or its end, if the log is shorter)."""
        recalled, left = 0, dict(ends)
        while left:
            for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                for record in records:
                    if record.offset < ends[tp] and (event := self._trusted(record)):
                        self.agent.recall(event)
                        recalled += 1
            for tp in list(left):
                position, highwater = await consumer.position(tp), consumer.highwater(tp)
                if position >= left[tp] or (highwater is not None and position >= highwater):
                    del left[tp]
                    consumer.pause(tp)
        return recalled

    def _trusted(self, record: ConsumerRecord) -> Event | None:
        """The event in a record read back, or None: another agent's (by its header, unread),
        or a bad or forged one (it went to `dlq` when first read, and is no more believed)."""
        if addressee(record.headers or ()) != self.agent.agent_id:
            return None
        try:
            event = decode(record.value or b"", self.bus.config.max_record_bytes)
        except EventDecodeError:
            return None
        refused = self.bus.trust.check(event, signing.header_map(record.headers))
        return None if refused else event

    async def stop(self) -> None:
        """Draining, then gone: work in hand is finished if it ends within the bus's bound
        (`stopping.HANDLER_S`), else handed back (its offset is not committed, so it is
        redelivered). Each goodbye waits at most `LEAVE_S`: a broker gone costs a stop
        seconds, and the last heartbeat simply expires."""
        if self._beating:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beating
        await self._say("draining")
        await self.bus.stop_consuming()
        await self._say("left")
        await self.bus.stop()

    async def _say(self, status: str) -> None:
        heartbeat = self.agent.heartbeat(status)
        await within(self.bus.publish(heartbeat), LEAVE_S, f"{self.group}: saying {status!r}")

    async def __aenter__(self) -> AgentService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
