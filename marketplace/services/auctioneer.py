"""The auctioneer service: moves events between Kafka and a pure auction state machine.

Which machine is `[auction] mechanism`: `lean` (`marketplace.lean_auction`, calls for drafts one
agent at a time, the default) or `paper` (`marketplace.core.paper_auction`, SALE's plans, jury and
refinement). For a lean auction the service also reads the memory once, when the first call is
due, and passes the resulting estimates in: the machine itself does no I/O.

Instances share the work in consumer group `auctioneer`. Task-scoped topics are co-partitioned
by task id, so whoever owns partition p of `tasks` owns partition p of `bids`, `reviews` and
`auctions` too, and with them every event of those tasks — including its own past decisions.

Restarts and rebalances: a new owner reads its partitions from the last committed offsets and
only folds events in until it has caught up with the high-water marks it saw; then it acts.
Offsets are committed only up to the first event of the oldest auction still open, so an open
auction is always rebuilt whole and a closed one is never decided again; they are committed off
the loop (`bus.commits.Committer`, at most `COMMIT_INTERVAL_S` behind), after the decisions they
answer are acknowledged, and at once when partitions are revoked or the service stops.

Backpressure (`[admission]`): an instance keeps at most `open_per_agent` auctions per live
agent open (and never more than `max_open`). Further tasks wait their turn, oldest offset first;
while the tasks in hand fill the bound, its `tasks` partitions are paused, so a flood waits on
the topic rather than opening auctions nobody can bid in. Bids and reviews for a task still
waiting there are held, not refused as orphans.

Budgets (`marketplace.core.budget`): before a task's auction opens, its tenant's spend is read
from the log (`marketplace.log.ledger`) when the tenant has a budget, and the task is refused —
an `AuctionClosed` with reason `over_budget`, the terms and the reason in words — when it is
over what is left, or its own budget cannot cover the cheapest live agent's expected cost. A
ledger that cannot be read decides nothing: the task waits, and is judged when it can be.

Liveness comes from `agents`, which every instance reads whole, outside the group.

Addressed delivery (`marketplace.services.postman`, docs/delivery.md): once a round's decisions
are acknowledged on `auctions`, each one addressed to agents (a call, a jury, a refinement, an
award; a paper auction's opening) is copied to their inboxes, with the task before an agent's
first call to bid; a partition that has caught up copies again the addressed decisions of the
auctions it rebuilt. Agents read only their inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from aiokafka import TopicPartition

from marketplace.core import budget, lean_policy
from marketplace.core.auction_state import Roster, Windows
from marketplace.core.clock import utc_now
from marketplace.core.lean_auction import LeanAuction, has_examples, prior_for
from marketplace.core.paper_auction import PaperAuction
from marketplace.log.ledger import Ledger, NoLedger
from marketplace.log.memory import Memory, NoMemory
from marketplace.services.postman import Postman
from marketplace.shared.admin import BROKER_CHECK_S, BrokerLost, watch_broker
from marketplace.shared.bus import (
    Bus,
    PartitionedConsumer,
    Source,
    Stamp,
    caught_up,
    from_start,
    read_back,
    reader,
    source_of,
)
from marketplace.shared.config import AdmissionConfig, AuctionConfig, Config
from marketplace.shared.stopping import COMMIT_S, LEAVE_S, within
from marketplace.shared.tokens import Tokenizers
from schemas.codec import encode
from schemas.events import (
    AgentHeartbeat,
    AuctionClosed,
    BidSubmitted,
    Event,
    RefinementCalled,
    RefinementInvite,
    TaskEvent,
    TaskPosted,
)

log = logging.getLogger("auctioneer")
GROUP = "auctioneer"
STREAMS = ("tasks", "bids", "reviews", "auctions")
TICK_S = 0.05
ORPHAN_TTL = timedelta(seconds=30)  # a bid or review whose task never shows up
CLOSED_RETENTION = timedelta(minutes=10)  # closed auctions kept to answer late bids
DECIDED_KEPT = 100_000  # ids of tasks decided, kept after their auctions are forgotten
RECALL_CLOSES = 20_000  # per partition of `auctions`, read back when it is assigned


AnyAuction = PaperAuction | LeanAuction


class Auctioneer:
    def __init__(
        self,
        config: Config,
        bus: Bus,
        memory: Memory | None = None,
        clock: Callable[[], datetime] = utc_now,
        tokenizers: Tokenizers | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.bus = bus
        self.config = config
        self.tokenizers = tokenizers or Tokenizers()
        self.settings: AuctionConfig = config.auction
        self.admission: AdmissionConfig = config.admission
        self.windows = Windows(
            bid=timedelta(seconds=config.auction.bid_window_s),
            jury=timedelta(seconds=config.auction.jury_window_s),
            refine=timedelta(seconds=config.auction.refine_window_s),
        )
        self.memory = memory or NoMemory()
        self.ledger = ledger or NoLedger()
        self._ledger_failing = False  # said once per outage
        self.clock = clock
        self.roster = Roster(ttl=timedelta(seconds=config.auction.heartbeat_ttl_s))
        self.lean = lean_policy.settings_of(config.auction.lean, config.auction.uncheckable)
        self.auctions: dict[str, AnyAuction] = {}
        self._first_offsets: dict[str, dict[TopicPartition, int]] = {}
        self._first_seen: dict[str, datetime] = {}
        self._closed_at: dict[str, datetime] = {}
        # Tasks decided and forgotten → the offset their TaskPosted was read at: read there
        # again it is a redelivery (a rebalance, a rewind), anywhere else a replay.
        self._decided: OrderedDict[str, int] = OrderedDict()
        self._resumed_at: dict[int, int] = {}  # auctions partition → its committed offset
        self._active: set[str] = set()  # open, or holding input not yet judged
        self._last_sweep = clock()
        self._paused: set[TopicPartition] = set()  # tasks partitions held at the bound
        self._held_at: dict[int, datetime] = {}  # partition → when its tasks were last held
        self._roster_ready = asyncio.Event()
        self._causes: dict[str, Stamp] = {}  # task → stamp of its last input (when tracing)
        self.broker_check_s = BROKER_CHECK_S
        self.consumer = PartitionedConsumer(bus, STREAMS, GROUP, owner=self)
        self.postman = Postman(bus)

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.bus.start()
        await self.consumer.start()
        roster = asyncio.create_task(self._follow_roster(stop))
        watch = asyncio.create_task(watch_broker(self.bus.config, self.broker_check_s))
        try:
            # Not the roster alone: a stop before it is read (it ends the roster's reader)
            # used to leave this wait, and the process, idle for ever.
            if not await _first_of(self._roster_ready.wait(), stop.wait(), roster, watch):
                if watch.done():
                    self._broker_lost(watch)
                if roster.done():
                    roster.result()  # it failed: raised as is
            if self._roster_ready.is_set():
                log.info("roster read: %d agents known", len(self.roster.beats))
            while not stop.is_set():
                if watch.done():
                    self._broker_lost(watch)
                await self._poll()
        finally:
            await self._stop(roster, watch)

    async def _stop(self, *tasks: asyncio.Task) -> None:
        """Commits up to the oldest open auction, then leaves: each step within its bound
        (`stopping`), so a broker gone costs seconds, not a hang."""
        for task in tasks:
            task.cancel()
        for task in tasks:
            await within(_ended(task), LEAVE_S, f"auctioneer: {task.get_coro().__name__}")
        assigned = self.consumer.assignment()
        await within(self._commit(assigned), COMMIT_S, "auctioneer: the last commit")
        await self.consumer.stop()
        await self.bus.stop()

    @staticmethod
    def _broker_lost(watch: asyncio.Task) -> None:
        """Stops the loop with the watch's one message: nothing is decided on a lost log."""
        try:
            watch.result()
        except BrokerLost as exc:
            log.critical("broker lost: %s", exc)
            raise

    async def _poll(self) -> None:
        async for delivery in self.consumer.poll(TICK_S):
            if isinstance(delivery.event, TaskEvent):
                await self._route(delivery.event, delivery.source)
                self._keep_record(delivery.event, delivery.source, delivery.body)
                if self.bus.config.trace:
                    stamp = self.consumer.stamp(delivery) | {"folded": time.time()}
                    self._causes[delivery.event.task_id] = stamp
        for partition in await self.consumer.caught_up():
            await self._recall_decided(partition)
            known = [t for t in self.auctions if self._partition(t) == partition]
            log.info("partition %d caught up: %d auctions known", partition, len(known))
            self.postman.caught_up(known, lambda t: self.auctions[t].phase == "closed")
        await self._act()
        # The round's decisions acknowledged before the next poll (a round trip per round, not
        # per decision): sent without waiting, a record queued behind one in flight to the same
        # partition was seen to stay unsent until the producer's next send (aiokafka 0.14).
        try:
            await self.bus.confirmed()
            await self.postman.deliver()  # the copies of decisions the log now holds
        except Exception as exc:  # a decision or copy the log may lack: nothing more committed
            self.consumer.committer.failure = exc
            raise
        self._hold_tasks()
        if self.consumer.committer.failure is not None:  # a decision the log may not hold
            raise self.consumer.committer.failure
        self.consumer.commit_soon(self._safe(self.consumer.assignment()))

    async def _route(self, event: TaskEvent, source: Source) -> None:
        if isinstance(event, BidSubmitted) and (why := self._misstated(event)):
            await self.bus.dead_letter(source, encode(event), self.bus.group(GROUP), why)
            return
        auction = self.auctions.get(event.task_id)
        if auction is None and self._replayed(event, source):
            reason = f"task_id {event.task_id} was already decided"
            await self.bus.dead_letter(source, encode(event), self.bus.group(GROUP), reason)
            return
        if auction is None:
            auction = self.auctions[event.task_id] = self._new_auction(event.task_id)
            self._first_seen[event.task_id] = self.clock()
        if isinstance(event, TaskPosted) and auction.task and auction.task != event:
            reason = f"task_id {event.task_id} was already posted"
            await self.bus.dead_letter(
                source,
                event.model_dump_json().encode(),
                self.bus.group(GROUP),
                reason,
            )
            return
        auction.apply(event)
        self._active.add(event.task_id)
        tp = TopicPartition(source.topic, source.partition)
        self._first_offsets.setdefault(event.task_id, {}).setdefault(tp, source.offset)

    async def adopted(self, partitions: set[TopicPartition]) -> None:
        """Notes where each `auctions` partition just assigned resumes (its committed offset):
        what was closed before it is recalled once the partition has caught up."""
        for tp in partitions:
            if tp.topic == self.bus.topics.auctions:
                self._resumed_at[tp.partition] = await self.consumer.position(tp)

    async def _recall_decided(self, partition: int) -> None:
        """Marks decided the tasks closed in the last `RECALL_CLOSES` records before where a
        partition of `auctions` resumed, before anything of it is decided: not read again after
        a restart, a task closed there and sent again (a replayed `TaskPosted`, already folded
        while catching up) would otherwise be auctioned again."""
        end = self._resumed_at.pop(partition, 0)
        if end == 0:
            return
        tp = TopicPartition(self.bus.topics.auctions, partition)
        records = await read_back(self.bus.config, tp, end, RECALL_CLOSES)
        closes = [(e, h) for e, h in records if isinstance(e, AuctionClosed)]
        refusals = await self.bus.trust.check_many(closes)
        for (closed, _), refused in zip(closes, refusals, strict=True):
            if refused is None:
                self._stale(closed.task_id)
        log.info("partition %d: %d decided tasks recalled", partition, len(closes))

    def _stale(self, task_id: str) -> None:
        """A task closed before this instance resumed: decided, and whatever of it was read
        since (a replay) is dropped, never auctioned."""
        if task_id in self.auctions:
            log.warning(
                "%s: closed before this start; what was read of it again is ignored", task_id
            )
            self._forget(task_id)
        self._decided[task_id] = -1  # its posting's offset: not known here
        while len(self._decided) > DECIDED_KEPT:
            self._decided.popitem(last=False)

    def _keep_record(self, event: TaskEvent, source: Source, body: bytes) -> None:
        """What the postman needs of a record read: the task of an auction (its record as it
        came, to copy to the agents asked to bid), and, while catching up, the decisions it
        may have to copy again."""
        auction = self.auctions.get(event.task_id)
        record = (body, source.headers)
        if isinstance(event, TaskPosted) and auction is not None and auction.task == event:
            if auction.phase != "closed":
                self.postman.posted(event, record)
        elif source.topic == self.bus.topics.auctions and (
            TopicPartition(source.topic, source.partition) in self.consumer.catching_up
        ):
            self.postman.read_back(event, record)

    def _replayed(self, event: TaskEvent, source: Source) -> bool:
        """Whether `event` is a task whose auction is over and forgotten, sent again (not read
        again where it was): auctioned again, it would call its agents to work again and be
        awarded twice."""
        if not isinstance(event, TaskPosted) or event.task_id not in self._decided:
            return False
        return self._decided[event.task_id] != source.offset

    def _misstated(self, bid: BidSubmitted) -> str | None:
        """Why a bid misstates what its agent registered (the price and model of its latest
        signed heartbeat) or its plan's length, or None. A bid states its price so the log can
        show it, but a price of its own choosing per bid would let an agent underbid itself
        once awarded; a plan counted short would make it look cheaper than it is."""
        beat = self.roster.beats.get(bid.agent_id)
        if beat is None:
            return None  # an agent with no heartbeat is the auction's to refuse (unknown_agent)
        if bid.price != beat.price:
            registered = f"{bid.agent_id} is registered at {beat.price:g}"
            return f"price: the bid says {bid.price:g}, {registered}"
        if bid.model != beat.model:
            return f"model: the bid says {bid.model}, {bid.agent_id} is registered as {beat.model}"
        return self._miscounted(bid)

    def _miscounted(self, bid: BidSubmitted) -> str | None:
        """Why a bid's plan holds more tokens than it says were generated, or None. A draft
        (lean) may begin with the task's own code, so that is taken off; a draft whose task is
        not read yet is not recounted."""
        given = ""
        if bid.examples_pass is not None:
            task = getattr(self.auctions.get(bid.task_id), "task", None)
            if task is None:
                return None
            given = task.prompt
        recount = self.tokenizers.understated(bid.model, bid.plan, bid.plan_tokens, given)
        if recount is None:
            return None
        return f"plan_tokens: the bid says {bid.plan_tokens}, its plan holds {recount} tokens"

    async def _act(self) -> None:
        """Settles every auction whose partition is caught up, publishing what is decided."""
        now = self.clock()
        ready = self.consumer.ready_partitions()
        admitted = self._admitted(ready, now)
        for task_id in list(self._active):
            auction = self.auctions[task_id]
            if self._partition(task_id) not in ready:
                continue
            if auction.task is None and auction.phase != "closed":
                if self._orphan_due(task_id, now):
                    await self._publish_all(auction, auction.orphaned())
                continue
            if auction.phase == "new" and task_id not in admitted:
                continue  # waits its turn
            while decisions := await self._settle(auction, now):
                await self._publish_all(auction, decisions)
            if auction.phase == "closed" and not auction.pending:
                self._active.discard(task_id)
                self._closed_at.setdefault(task_id, now)
                self.postman.closed(task_id)
        if now - self._last_sweep > CLOSED_RETENTION / 10:
            self._last_sweep = now
            for task_id, closed_at in list(self._closed_at.items()):
                if now - closed_at > CLOSED_RETENTION and task_id not in self._active:
                    self._forget(task_id)

    # --- admission ---------------------------------------------------------------------

    def bound(self, now: datetime) -> int:
        """How many auctions may be open: as many as the live agents can bid in."""
        agents = max(1, len(self.roster.live(now)))
        return min(self.admission.max_open, self.admission.open_per_agent * agents)

    def open_count(self) -> int:
        return sum(self._is_open(self.auctions[t]) for t in self._active)

    @staticmethod
    def _is_open(auction: AnyAuction) -> bool:
        return auction.task is not None and auction.phase not in ("new", "closed")

    def _waiting(self) -> list[str]:
        """Tasks read but not yet admitted, in the order they are admitted: by offset."""
        waiting = [
            t for t in self._active if self.auctions[t].task and self.auctions[t].phase == "new"
        ]
        return sorted(waiting, key=self._task_position)

    def _task_position(self, task_id: str) -> tuple[int, int]:
        tp = TopicPartition(self.bus.topics.tasks, self._partition(task_id) or 0)
        return self._first_offsets[task_id].get(tp, 0), tp.partition

    def _admitted(self, ready: set[int], now: datetime) -> set[str]:
        """The waiting tasks that may open now: the oldest first, while there is room."""
        room = self.bound(now) - self.open_count()
        waiting = [t for t in self._waiting() if self._partition(t) in ready]
        return set(waiting[: max(room, 0)])

    def _hold_tasks(self) -> None:
        """Pauses the tasks partitions while the tasks in hand fill the bound, resumes them
        once there is room. Partitions still catching up are never held: a restart reads the
        open auctions whole first."""
        now = self.clock()
        in_hand = len(self._waiting()) + self.open_count()
        ready = self.consumer.ready_partitions()
        tasks = {
            tp
            for tp in self.consumer.assignment()
            if tp.topic == self.bus.topics.tasks and tp.partition in ready
        }
        if in_hand >= self.bound(now):
            self.consumer.pause(tasks)
            self._paused = tasks
            for tp in tasks:
                self._held_at[tp.partition] = now
        elif self._paused:
            self.consumer.resume(self._paused)
            self._paused = set()

    def _orphan_due(self, task_id: str, now: datetime) -> bool:
        """A bid or review whose task has not come: refused once its tasks partition has
        been read freely (not held at the bound) for `ORPHAN_TTL`; till then the task may
        still be waiting on the topic."""
        partition = self._partition(task_id)
        if any(tp.partition == partition for tp in self._paused):
            return False
        held = self._held_at.get(partition)
        since = max(self._first_seen[task_id], held) if held else self._first_seen[task_id]
        return now - since > ORPHAN_TTL

    def _new_auction(self, task_id: str) -> AnyAuction:
        """The configured mechanism's machine. Switching mechanism while auctions are open is
        not supported: an open auction is rebuilt by the machine of the current setting."""
        return LeanAuction(task_id) if self.settings.mechanism == "lean" else PaperAuction(task_id)

    async def _settle(self, auction: AnyAuction, now: datetime) -> list[Event]:
        if isinstance(auction, LeanAuction):
            estimates = await self._estimates(auction, now)
            expected = {e.agent_id: e.cost for e in estimates} if estimates else None
            if (refused := await self._refusal(auction, now, expected)) is not None:
                return refused
            return auction.settle(
                self.roster,
                self.windows,
                self.lean.value,
                now,
                estimates,
                self.lean.feedback,
                self.lean.uncheckable,
            )
        if (refused := await self._refusal(auction, now)) is not None:
            return refused
        return auction.settle(self.roster, self.windows, self.settings.weights, now)

    async def _refusal(
        self, auction: AnyAuction, now: datetime, expected: dict[str, float] | None = None
    ) -> list[Event] | None:
        """Before a task's auction opens: [its refusal] when it is over budget, [] while the
        ledger cannot be read (the task waits), None when it may go on. `expected`: the live
        agents' expected costs (the lean estimates'); else each agent's prior."""
        task = auction.task
        if task is None or auction.phase != "new":
            return None
        tenant_budget = self.config.tenant_budget(task.tenant)
        if not budget.limited(task, tenant_budget):
            return None
        try:
            spent = await self.ledger.spent(task.tenant) if tenant_budget is not None else 0.0
        except Exception as exc:
            if not self._ledger_failing:
                log.warning("tenant spend unreadable (%r): tasks with budgets wait", exc)
            self._ledger_failing = True
            return []
        self._ledger_failing = False
        if expected is None:
            expected = {
                agent_id: prior_for(
                    self.settings.lean.priors,
                    agent_id,
                    self.roster.beats[agent_id].price,
                    task.kind,
                ).cost
                for agent_id in self.roster.live(now, task.kind)
            }
        terms = budget.terms(task, tenant_budget, spent, expected)
        closed = budget.refusal(task, terms, self.settings.mechanism)
        return [closed] if closed is not None else None

    async def _estimates(
        self, auction: LeanAuction, now: datetime
    ) -> list[lean_policy.Estimate] | None:
        """What the memory says of each agent that may be asked, when the first call is due."""
        agents = auction.candidates(self.roster, now)
        if agents is None:
            return None
        task = auction.task
        records = await self.memory.records(task, agents) if has_examples(task) else []
        priors = self.settings.lean.priors
        return [
            lean_policy.estimate(
                agent_id,
                prior_for(priors, agent_id, self.roster.beats[agent_id].price, auction.task.kind),
                records,
                self.lean,
            )
            for agent_id in agents
        ]

    async def _publish_all(self, auction: AnyAuction, decisions: list[Event]) -> None:
        for decision in decisions:
            if isinstance(decision, RefinementCalled):
                decision = await self._with_examples(auction, decision)
            record = self.bus.record(decision, cause=self._causes.get(auction.task_id))
            await self.bus.send_record(decision, record)
            self.postman.decided(decision, record)
            auction.apply(decision)
            if isinstance(decision, AuctionClosed):
                why = decision.lean.why if decision.lean else decision.detail
                log.info(
                    "%s closed: %s, winner %s%s",
                    decision.task_id,
                    decision.reason,
                    decision.winner_agent_id,
                    f" ({why})" if why else "",
                )

    async def _with_examples(
        self, auction: PaperAuction, call: RefinementCalled
    ) -> RefinementCalled:
        invites = [
            RefinementInvite(
                agent_id=invite.agent_id,
                examples=await self.memory.examples(
                    auction.task, invite.agent_id, self.settings.memory_k
                ),
            )
            for invite in call.invites
        ]
        return call.model_copy(update={"invites": invites})

    # --- partitions, catching up, committing ---------------------------------------------

    def _partition(self, task_id: str) -> int | None:
        offsets = self._first_offsets.get(task_id)
        return next(iter(offsets)).partition if offsets else None

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self._commit(partitions)
        self._paused -= partitions
        lost = {tp.partition for tp in partitions}
        for task_id in [t for t in self.auctions if self._partition(t) in lost]:
            self._forget(task_id)

    async def _commit(self, partitions: set[TopicPartition]) -> None:
        """Commits now up to the oldest open auction, once every decision sent is acknowledged
        (the consumer's `Committer` sees to that, as for the commits made in passing)."""
        await self.consumer.commit(self._safe(partitions))

    def _safe(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Per partition, how far it may be committed: up to the first record of the oldest
        auction still open there, so an open auction is always read again whole."""
        read = self.consumer.next_offsets
        safe = {tp: read[tp] for tp in partitions if tp in read}
        for task_id in self._active:
            for tp, first in self._first_offsets.get(task_id, {}).items():
                if tp in safe:
                    safe[tp] = min(safe[tp], first)
        return safe

    def _forget(self, task_id: str) -> None:
        auction = self.auctions.get(task_id)
        read_at = self._first_offsets.get(task_id, {}).items()
        posted_at = [o for tp, o in read_at if tp.topic == self.bus.topics.tasks]
        if auction is not None and auction.phase == "closed" and posted_at:
            self._decided[task_id] = posted_at[0]
            while len(self._decided) > DECIDED_KEPT:
                self._decided.popitem(last=False)
        for table in (
            self.auctions,
            self._first_offsets,
            self._first_seen,
            self._closed_at,
            self._causes,
        ):
            table.pop(task_id, None)
        self._active.discard(task_id)
        self.postman.forget(task_id)

    # --- liveness ------------------------------------------------------------------------

    async def _follow_roster(self, stop: asyncio.Event) -> None:
        """Reads every heartbeat ever published (outside the group: every instance needs all)."""
        consumer = await reader(self.bus.config)
        try:
            parts = await from_start(consumer, [self.bus.topics.agents])
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=int(TICK_S * 1000))
                for records in batches.values():
                    for record in records:
                        group = self.bus.group(f"{GROUP}.roster")
                        event = await self.bus.receive(record.value, source_of(record), group)
                        if isinstance(event, AgentHeartbeat) and not self.roster.admit(
                            event, self.clock()
                        ):
                            log.warning("heartbeat of %s dated ahead: ignored", event.agent_id)
                if not self._roster_ready.is_set() and await caught_up(consumer, parts):
                    self._roster_ready.set()
        finally:
            await consumer.stop()


async def _first_of(ready: Awaitable[object], *others: Awaitable[object]) -> bool:
    """Waits until `ready` or any of `others` is done; True if `ready` was."""
    waiting = [asyncio.ensure_future(ready), *(asyncio.ensure_future(o) for o in others)]
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        return waiting[0].done()
    finally:
        for future in waiting:
            if not future.done() and future not in others:
                future.cancel()


async def _ended(task: asyncio.Task) -> None:
    """Waits for a task told to cancel; its failure (a lost broker, say) is said elsewhere."""
    with contextlib.suppress(asyncio.CancelledError, BrokerLost):
        await task
