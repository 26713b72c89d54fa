"""What a reader of the log returns (`Log`: the events, and the records that no longer hold a
valid event) and what it reads: the event types and streams replay works from. A log that
cannot be read at all is `LogUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from marketplace.log.gc_pause import paused_gc
from marketplace.log.replay.discrepancy import Discrepancy
from marketplace.shared.errors import UserError
from schemas.codec import EventDecodeError, decode
from schemas.events import AuctionClosed, Event

# What verification and counterfactuals use (bids: the lean auction's drafts; results: the
# market's rules, graded = awarded, `market_checks`).
STREAMS = ("tasks", "bids", "reviews", "auctions", "results", "outcomes")
TYPES = (
    "TaskPosted",
    "BidSubmitted",
    "BidRequested",
    "ReviewSubmitted",
    "JuryCalled",
    "RefinementCalled",
    "SubmissionRejected",
    "AuctionClosed",
    "TaskResult",
    "TaskOutcome",
)


class LogUnavailable(UserError, RuntimeError):
    """The log cannot be read at all (no table, a broker that stops answering)."""


NO_LOG = (
    "the database holds no event log yet: has `sale run` (or `sale up` with the recorder) "
    "recorded anything with this config?"
)


@dataclass(frozen=True)
class Log:
    """The events read, and the records that no longer hold a valid event (a changed row)."""

    source: str
    events: list[Event]
    unreadable: list[Discrepancy]

    def report(self, found: Sequence[Discrepancy]) -> str:
        """The verdict: one line per difference, after a count of the decisions that differ."""
        found = [*self.unreadable, *found]
        auctions = sum(isinstance(e, AuctionClosed) for e in self.events)
        head = f"replayed {auctions} closed auctions from {self.source}"
        if not found:
            return f"{head}: every decision verified"
        tasks = len({d.task_id for d in found})
        return "\n".join([f"{head}: {tasks} differ", *(f"  {d}" for d in found)])


def decoded(source: str, rows: Iterable[tuple[str, str, str | bytes]]) -> Log:
    """The events of `rows` (task id, where it is stored, the raw event); a row that no longer
    decodes is kept as a discrepancy, not raised."""
    events, unreadable = [], []
    with paused_gc():
        for task_id, where, raw in rows:
            try:
                events.append(decode(raw))
            except EventDecodeError as exc:
                unreadable.append(unreadable_row(task_id, where, exc))
    return Log(source, events, unreadable)


def unreadable_row(task_id: str, where: str, exc: EventDecodeError) -> Discrepancy:
    """A stored row or a record that no longer holds a valid event."""
    return Discrepancy(task_id, where, str(exc), "a valid event")
