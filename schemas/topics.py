"""Topic names, in one place, and which topic each event type travels on; the inbox, where the
events addressed to one agent are copied (docs/delivery.md)."""

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

# The inbox: copies, same bytes and signature, of the events on their own stream that ask
# something of one agent, keyed by that agent's id and marked with it in `ADDRESSEE_HEADER`, so
# an agent reads one partition and skips, before any decode, what is addressed to its neighbours
# there. No event travels only here: the stream of record stays the one in `STREAMS`.
INBOX = "inbox"
INBOX_CARRIES: tuple[type[Event], ...] = (
    TaskPosted,
    AuctionOpened,
    BidRequested,
    JuryCalled,
    RefinementCalled,
    AuctionClosed,
)
ADDRESSEE_HEADER = "sale-to"


def addressees(event: Event) -> tuple[str, ...]:
    """The agents a decision asks something of, each sent a copy in its inbox: the agents a
    paper auction asks to bid (its `AuctionOpened`), the one a call for a draft names, the
    jurors, the invitees of a refinement, the winner. A `TaskPosted` is sent to an agent with
    its first call to bid (the auctioneer's); a lean `AuctionOpened` asks nothing of anyone."""
    match event:
        case AuctionOpened(mechanism="paper"):
            return tuple(event.agents)
        case BidRequested():
            return (event.agent_id,)
        case JuryCalled():
            return tuple(event.jurors)
        case RefinementCalled():
            return tuple(invite.agent_id for invite in event.invites)
        case AuctionClosed() if event.winner_agent_id is not None:
            return (event.winner_agent_id,)
    return ()


def calls_to_bid(event: Event) -> bool:
    """Whether `event`, addressed to an agent, asks it for a bid on the task: the agent needs
    the task itself first."""
    return isinstance(event, BidRequested | AuctionOpened)


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
        if stream in STREAMS or stream == INBOX:
            return self.prefix + stream
        raise AttributeError(stream)

    def all(self) -> list[str]:
        """The streams of record: every event once (the recorder reads them all); not the
        inbox, whose records are copies."""
        return [self.prefix + stream for stream in STREAMS]

    def every(self) -> list[str]:
        """Every topic of the deployment, the inbox included: what the broker must have."""
        return [*self.all(), self.prefix + INBOX]

    def for_event(self, event: Event) -> str:
        return self.prefix + _STREAM_OF_TYPE[event.type]
