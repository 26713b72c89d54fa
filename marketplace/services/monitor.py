"""`sale monitor`: one readable line per event on every stream, for people watching a run."""

from __future__ import annotations

from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import Config
from schemas.events import (
    AgentHeartbeat,
    AuctionClosed,
    BidRequested,
    BidSubmitted,
    DeadLetter,
    Event,
    SubmissionRejected,
    TaskOutcome,
    TaskPosted,
    TaskResult,
)
from schemas.topics import STREAMS


def summarize(event: Event) -> str:
    """A one-line, human summary of an event; the part after the type depends on the type."""
    match event:
        case TaskPosted():
            detail = f"{event.kind} task {event.task_id}: {event.prompt[:60]!r}"
        case BidRequested():
            detail = f"{event.task_id} call {event.call} asks {event.agent_id}: {event.why}"
        case BidSubmitted() if event.is_draft:
            verdict = "passes" if event.examples_pass else "fails"
            detail = f"{event.task_id} draft by {event.agent_id}: {verdict} the visible examples"
        case BidSubmitted():
            detail = (
                f"{event.task_id} round {event.round} by {event.agent_id}: "
                f"{event.plan_tokens} tokens, entropy {event.entropy:.3f}"
            )
        case SubmissionRejected():
            detail = f"{event.task_id} bid by {event.agent_id} not counted: {event.reason}"
        case AuctionClosed():
            detail = f"{event.task_id} {event.reason}, winner {event.winner_agent_id}"
        case TaskResult():
            detail = f"{event.task_id} by {event.agent_id}, cost {event.cost:.6f}" + (
                f", error {event.error[:60]!r}" if event.error else ""
            )
        case TaskOutcome():
            detail = f"{event.task_id} {'passed' if event.passed else 'failed'}"
        case AgentHeartbeat():
            detail = f"{event.agent_id} ({event.model}) {event.status}"
        case DeadLetter():
            detail = f"{event.source_topic}[{event.partition}]@{event.offset}: {event.error[:120]}"
        case _:
            detail = event.key
    return f"{event.type:<16} {detail}"


def attach(bus: Bus, config: Config, group: str = "monitor") -> None:
    async def show(event: Event, source: Source) -> None:
        print(summarize(event), flush=True)

    bus.subscribe(list(STREAMS), group, show, from_start=False)
