"""The log indexed by task: each task's closes, and the rest of the log as evidence for the
terms those closes record (the task, the juries called, the refinement, the reviews that
counted, the outcome; for a lean auction its calls and drafts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from schemas.events import (
    AuctionClosed,
    BidRequested,
    BidSubmitted,
    Event,
    JuryCalled,
    RefinementCalled,
    ReviewSubmitted,
    SubmissionRejected,
    TaskOutcome,
    TaskPosted,
)


@dataclass
class Evidence:
    """What the rest of the log says about one auction; each part can confirm some terms."""

    task: TaskPosted | None = None
    juries: list[JuryCalled] = field(default_factory=list)
    refinement: RefinementCalled | None = None
    reviews: list[ReviewSubmitted] = field(default_factory=list)  # those not rejected
    outcome: TaskOutcome | None = None
    calls: list[BidRequested] = field(default_factory=list)  # lean
    drafts: dict[UUID, BidSubmitted] = field(default_factory=dict)  # lean, by bid id
    rejected_drafts: set[UUID] = field(default_factory=set)  # bid ids


@dataclass
class History:
    closed: dict[str, list[AuctionClosed]]
    evidence: dict[str, Evidence]


def index(events: Iterable[Event]) -> History:
    """Groups the log by task. Rejected reviews are dropped: the auction did not count them."""
    events = list(events)
    rejected = {e.rejected_event_id for e in events if isinstance(e, SubmissionRejected)}
    closed: dict[str, list[AuctionClosed]] = defaultdict(list)
    evidence: dict[str, Evidence] = defaultdict(Evidence)
    for event in events:
        match event:
            case AuctionClosed():
                closed[event.task_id].append(event)
            case TaskPosted():
                evidence[event.task_id].task = evidence[event.task_id].task or event
            case JuryCalled():
                evidence[event.task_id].juries.append(event)
            case RefinementCalled():
                evidence[event.task_id].refinement = event
            case ReviewSubmitted() if event.event_id not in rejected:
                evidence[event.task_id].reviews.append(event)
            case TaskOutcome():
                evidence[event.task_id].outcome = event
            case BidRequested():
                evidence[event.task_id].calls.append(event)
            case BidSubmitted() if event.is_draft:
                evidence[event.task_id].drafts.setdefault(event.bid_id, event)
                if event.event_id in rejected:
                    evidence[event.task_id].rejected_drafts.add(event.bid_id)
    return History(dict(closed), dict(evidence))
