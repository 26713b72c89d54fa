"""The auctioneer's addressed delivery: copies of its decisions, and of the tasks they concern,
in the inboxes of the agents they ask something of (docs/delivery.md).

The decision of record is the one on `auctions`; a copy goes out only once it is acknowledged
there, so an agent never acts on a decision the log does not hold (a restarted auctioneer could
decide otherwise). Copies are at least once: an auctioneer that catches up with its partitions
(a restart, a rebalance) copies again the addressed decisions of every auction it rebuilt —
of a closed one only its award, the calls of a closed auction being moot — so a crash between
a decision and its copies loses no call and no award; agents answer an event id once
(`agents.handled`).

An agent asked to bid needs the task: its `TaskPosted`, as the client published and signed it,
goes to the agent just before its first call to bid (lean: a `BidRequested`; paper: the
`AuctionOpened` that lists it), on the same partition, so in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from marketplace.shared.bus import Bus, Letter
from marketplace.shared.bus.addressed import Headers
from schemas.events import AuctionClosed, Event, TaskEvent, TaskPosted
from schemas.topics import addressees, calls_to_bid

Record = tuple[bytes, Headers]


class Postman:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.tasks: dict[str, Record] = {}  # task id → its TaskPosted's record, as read
        self.told: dict[str, set[str]] = {}  # task id → the agents sent the task
        self.rebuilt: dict[str, list[tuple[TaskEvent, Record]]] = {}  # read back, catching up
        self.outbox: list[Letter] = []  # waiting for their decisions' acknowledgement
        self.copies = 0  # inbox records sent

    def posted(self, task: TaskPosted, record: Record) -> None:
        """The record of the task an auction runs, kept to copy to the agents asked to bid."""
        self.tasks.setdefault(task.task_id, record)

    def decided(self, decision: TaskEvent, record: Record) -> None:
        """A decision just sent on `auctions`: its copies go out once it is acknowledged."""
        self.outbox += self._letters(decision, record)

    def read_back(self, decision: TaskEvent, record: Record) -> None:
        """A decision of this auctioneer's (or a predecessor's) read while catching up."""
        if addressees(decision):
            self.rebuilt.setdefault(decision.task_id, []).append((decision, record))

    def caught_up(self, task_ids: Iterable[str], closed: Callable[[str], bool]) -> None:
        """The rebuilt auctions of a partition now caught up: their addressed decisions are
        copied again (of a closed auction, its award only)."""
        for task_id in task_ids:
            for decision, record in self.rebuilt.pop(task_id, []):
                if not closed(task_id) or isinstance(decision, AuctionClosed):
                    self.outbox += self._letters(decision, record)

    def _letters(self, decision: Event, record: Record) -> list[Letter]:
        to = addressees(decision)
        if not to:
            return []
        letters = []
        task = self.tasks.get(decision.task_id)
        if calls_to_bid(decision) and task is not None:
            told = self.told.setdefault(decision.task_id, set())
            if new := tuple(a for a in to if a not in told):
                letters.append(Letter(*task, to=new))
                told.update(new)
        return [*letters, Letter(*record, to=to)]

    async def deliver(self) -> None:
        """Sends the copies waiting (their decisions are acknowledged by now) and waits for
        theirs: a copy queued behind another to the same partition was seen to stay unsent
        until the producer's next send (aiokafka 0.14)."""
        letters, self.outbox = self.outbox, []
        for letter in letters:
            await self.bus.send_copies(letter)
            self.copies += len(letter.to)
        if letters:
            await self.bus.confirmed()

    def closed(self, task_id: str) -> None:
        """An auction closed and its award copied: its task is sent to no one else."""
        self.tasks.pop(task_id, None)
        self.told.pop(task_id, None)

    def forget(self, task_id: str) -> None:
        self.closed(task_id)
        self.rebuilt.pop(task_id, None)
