"""Topic names, in one place, and which topic each event type travels on."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import (
    AgentHeartbeat,
    AuctionClosed,
    AuctionOpened,
    BidRequested,
    BidSubmitted,
    DeadLetter,
    Event,
    JuryCalled,
    RefinementCalled,
    ReviewSubmitted,
    SubmissionRejected,
    TaskChecks,
    TaskOutcome,
    TaskPosted,
    TaskResult,
)

# Stream name → the event types it carries. Order is the flow of one auction.
STREAMS: dict[str, tuple[type[Event], ...]] = {
    "tasks": (TaskPosted,),
    "checks": (TaskChecks,),
    "bids": (BidSubmitted,),
    "reviews": (ReviewSubmitted,),
    "auctions": (
        AuctionOpened,
        BidRequested,
        JuryCalled,
        RefinementCalled,
        SubmissionRejected,
        AuctionClosed,
    ),
    "results": (TaskResult,),
    "outcomes": (TaskOutcome,),
    "agents": (AgentHeartbeat,),
    "dlq": (DeadLetter,),
}

_STREAM_OF_TYPE: dict[str, str] = {
    model.model_fields["type"].default: stream
    for stream, models in STREAMS.items()
    for model in models
}


@dataclass(frozen=True)
class Topics:
    """The concrete topic names for one deployment (or one test): the prefix keeps them apart."""

    prefix: str = "sale."

    def __getattr__(self, stream: str) -> str:
        if stream in STREAMS:
            return self.prefix + stream
        raise AttributeError(stream)

    def all(self) -> list[str]:
        return [self.prefix + stream for stream in STREAMS]

    def for_event(self, event: Event) -> str:
        return self.prefix + _STREAM_OF_TYPE[event.type]
