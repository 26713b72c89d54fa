"""One event as one line of text: the only renderer of events for people.

The monitor prints a line per event on every stream, the main job prints each auction's steps
as they stream by, and the audit tells one task's timeline; all three say the same thing of an
event the same way, so what a reader learns from one holds in the others. Pure: events in,
text out.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

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
    ScoredBid,
    SubmissionRejected,
    TaskChecks,
    TaskOutcome,
    TaskPosted,
    TaskResult,
)

Labels = dict[UUID, str]


def line(event: Event, labels: Labels | None = None) -> str:
    """The event's type, its key (task or agent id) and its gist, on one line."""
    return f"{event.type:<18} {event.key}: {gist(event, labels)}"


def bid_label(bid: ScoredBid | BidSubmitted) -> str:
    """How a bid is named to people: agent and round, unique within an auction."""
    return f"{bid.agent_id}:{bid.round}"


def labels_of(events: Iterable[Event]) -> Labels:
    """bid id → agent:round, so reviews and results read as who, not as a UUID."""
    labels: Labels = {}
    for event in events:
        match event:
            case BidSubmitted() if event.is_draft:
                labels[event.bid_id] = f"{event.agent_id}:draft"
            case BidSubmitted():
                labels[event.bid_id] = bid_label(event)
            case JuryCalled() | AuctionClosed():
                labels.update({b.bid_id: bid_label(b) for b in event.bids})
    return labels


def name(labels: Labels, bid_id: UUID | None) -> str:
    return "-" if bid_id is None else labels.get(bid_id, str(bid_id)[:8])


def verdict(draft: BidSubmitted, general: bool = False) -> str:
    """A draft's verdict on the visible examples, with the last line of its failure; of a
    general task's draft (its answer), whether there is one."""
    if general:
        return "an answer" if draft.examples_pass else f"no answer ({draft.failure or 'empty'})"
    if draft.examples_pass:
        return "passes the visible examples"
    reason = (draft.failure or "").strip().splitlines()
    return "fails the visible examples" + (f" ({reason[-1][:80]})" if reason else "")


def gist(event: Event, labels: Labels | None = None) -> str:
    """What the event says that matters to the story, on one line."""
    labels = labels or {}
    match event:
        case TaskPosted():
            return f"posted: {event.kind} task from {event.producer}, {event.prompt[:60]!r}"
        case TaskChecks():
            return f"hidden {event.checks.kind} checks (for the verifier)"
        case AuctionOpened(mechanism="lean"):
            return f"lean: may ask {', '.join(event.agents) or 'nobody'}"
        case AuctionOpened():
            return f"expects bids from {', '.join(event.agents) or 'nobody'}"
        case BidRequested():
            return _asked(event)
        case BidSubmitted() if event.is_draft:
            return (
                f"{event.agent_id} draft: {verdict(event)}, {event.plan_tokens} tokens, "
                f"cost {event.usage.cost:.6g}"
            )
        case BidSubmitted():
            return (
                f"{bid_label(event)} price {event.price:g}, {event.plan_tokens} plan tokens, "
                f"entropy {event.entropy:.3g}"
            )
        case JuryCalled():
            bids = ", ".join(bid_label(b) for b in event.bids)
            return f"round {event.round}: {bids} judged by {', '.join(event.jurors)}"
        case ReviewSubmitted():
            scores = ", ".join(
                f"{name(labels, s.bid_id)}={'-' if s.score is None else f'{s.score:g}'}"
                for s in event.scores
            )
            return f"{event.juror} scores round {event.round}: {scores}"
        case RefinementCalled():
            invited = ", ".join(i.agent_id for i in event.invites)
            return (
                f"provisional {name(labels, event.provisional_bid_id)} "
                f"(score {event.provisional_score:.4g}); invites {invited}"
            )
        case SubmissionRejected():
            reason = _one_line(event.reason)
            return f"{event.submission} from {event.agent_id} not counted: {reason}"
        case AuctionClosed() if event.refused:
            return f"refused ({event.reason}): {event.detail}"
        case AuctionClosed(mechanism="lean"):
            return f"{event.reason}: winner {event.winner_agent_id or '-'} ({event.lean.why})"
        case AuctionClosed():
            return f"{event.reason}: winner {name(labels, event.winner_bid_id)}"
        case TaskResult():
            failed = f", error: {_one_line(event.error)[:60]}" if event.error else ""
            return (
                f"{event.agent_id} ran {name(labels, event.bid_id)} in {event.duration_s:.3g}s, "
                f"{len(event.output)} chars of output, cost {event.cost:.6g}{failed}"
            )
        case TaskOutcome() if event.answered:
            return "answered (a general task: nothing to check)"
        case TaskOutcome():
            return f"{'passed' if event.passed else 'failed'}, score {event.score:g}"
        case AgentHeartbeat():
            return f"{event.agent_id} {event.status} ({event.model}, price {event.price:g})"
        case DeadLetter():
            where = f"{event.source_topic}[{event.partition}]@{event.offset}"
            return f"{where}: {_one_line(event.error)[:80]}"
    return ""


def _asked(event: BidRequested) -> str:
    """Whom the lean auction asks, why, and what it expects of the agent."""
    shown = f"; shown {event.feedback.agent_id}'s failing draft" if event.feedback else ""
    expects = next((e for e in event.estimates if e.agent_id == event.agent_id), None)
    expected = (
        f"; expects its draft to pass the examples {expects.examples_pass:.0%}, to be right if "
        f"it does {expects.right_if_pass:.0%}, to cost {expects.cost:.3g}"
        if expects is not None
        else ""
    )
    return f"call {event.call}: asks {event.agent_id} ({event.why}){shown}{expected}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
