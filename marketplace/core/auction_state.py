"""What both auction mechanisms share, pure: the live roster, the windows, the folded events.

An auction's state is a fold over the auction's events — the task, the bids and reviews, and the
auctioneer's own decisions (AuctionOpened, JuryCalled, RefinementCalled, SubmissionRejected,
AuctionClosed). Decisions are authoritative: once JuryCalled lists a round's bids, no other bid
of that round counts, whatever order a rebuilding auctioneer reads the topics in. That is what
lets a new owner of a partition rebuild an open auction from the log and finish it exactly once.

Inputs (bids, reviews) wait in `pending` until `settle(now)` judges them against the decided
state; `settle` then returns the decisions that are due (phase changes, rejections).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from schemas.events import (
    MAX_CLOCK_SKEW,
    AgentHeartbeat,
    AuctionClosed,
    AuctionOpened,
    BidSubmitted,
    Event,
    ReviewSubmitted,
    SubmissionRejected,
    TaskPosted,
)

Phase = Literal["new", "bidding", "jury", "refining", "closed"]
PRODUCER = "auctioneer"


@dataclass(frozen=True)
class Windows:
    bid: timedelta
    jury: timedelta
    refine: timedelta


SKEW = MAX_CLOCK_SKEW  # how far ahead of the auctioneer's clock a heartbeat may be dated


@dataclass
class Roster:
    """Who is live: the latest heartbeat of each agent, judged against a time-to-live."""

    ttl: timedelta
    beats: dict[str, AgentHeartbeat] = field(default_factory=dict)

    def apply(self, beat: AgentHeartbeat) -> None:
        known = self.beats.get(beat.agent_id)
        if known is None or beat.occurred_at >= known.occurred_at:
            self.beats[beat.agent_id] = beat

    def admit(self, beat: AgentHeartbeat, now: datetime) -> bool:
        """Applies a heartbeat unless it is dated beyond `SKEW` after `now` (the service's
        clock): one dated in the future would stand for the latest until then, keeping a dead
        agent live or a live one gone. Returns whether it was applied."""
        if beat.occurred_at - now > SKEW:
            return False
        self.apply(beat)
        return True

    def is_live(self, agent_id: str, now: datetime) -> bool:
        beat = self.beats.get(agent_id)
        return beat is not None and beat.status == "up" and now - beat.occurred_at <= self.ttl

    def live(self, now: datetime, kind: str | None = None) -> list[str]:
        return sorted(
            a
            for a, beat in self.beats.items()
            if self.is_live(a, now) and (kind is None or kind in beat.kinds)
        )


@dataclass
class Folded:
    """What every mechanism folds from an auction's events: the task, the inputs waiting to be
    judged, and the decisions both mechanisms make (open, reject, close). Each mechanism adds
    its own decisions in `_fold_decision`."""

    task_id: str
    task: TaskPosted | None = None
    opened: AuctionOpened | None = None
    closed: AuctionClosed | None = None
    bids: dict[UUID, BidSubmitted] = field(default_factory=dict)  # accepted or decided
    rejected: set[UUID] = field(default_factory=set)  # event ids already refused
    pending: list[BidSubmitted | ReviewSubmitted] = field(default_factory=list)
    seen: set[UUID] = field(default_factory=set)

    def apply(self, event: Event) -> None:
        """Folds any event about this task into the state; applying one twice changes nothing."""
        if event.event_id in self.seen:
            return
        self.seen.add(event.event_id)
        match event:
            case TaskPosted():
                self.task = self.task or event
            case BidSubmitted() | ReviewSubmitted():
                self.pending.append(event)
            case AuctionOpened():
                self.opened = event
            case SubmissionRejected():
                self.rejected.add(event.rejected_event_id)
            case AuctionClosed():
                self.closed = event
            case _:
                self._fold_decision(event)

    def _fold_decision(self, event: Event) -> None:
        """A decision only this mechanism makes (none here)."""

    def _refuse(
        self, submission: BidSubmitted | ReviewSubmitted, agent_id: str, reason: str, detail: str
    ) -> SubmissionRejected:
        """Refuses a bid or review for good: remembered, so it is never judged again."""
        self.rejected.add(submission.event_id)
        return SubmissionRejected(
            producer=PRODUCER,
            task_id=self.task_id,
            agent_id=agent_id,
            submission="bid" if isinstance(submission, BidSubmitted) else "review",
            rejected_event_id=submission.event_id,
            bid_id=getattr(submission, "bid_id", None),
            reason=reason,
            detail=detail,
        )
