"""One event as one line of text: the only renderer of events for people.

The monitor prints a line per event on every stream, the main job prints each auction's steps
as they stream by, and the audit tells one task's timeline; all three say the same thing of an
event the same way, so what a reader learns from one holds in the others. A search task's
result also tells its tool loop, a line per step under the event's line (`story`): the queries
issued, the articles read, the answer. Pure: events in, text out.
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
    ToolStep,
)

Labels = dict[UUID, str]
GRADED = "exact match:"  # how the verifier's details of a graded search answer begin


def line(event: Event, labels: Labels | None = None, answered: bool = False) -> str:
    """The event's type, its key (task or agent id) and its gist, on one line. `answered`: the
    event is about a task answered as text (general, search), whose draft has no examples."""
    return f"{event.type:<18} {event.key}: {gist(event, labels, answered)}"


def story(event: Event, labels: Labels | None = None, answered: bool = False) -> str:
    """The event's line, and under it, for a search task's result, a line per tool step."""
    steps = event.steps if isinstance(event, TaskResult) else []
    first = line(event, labels, answered)
    return "\n".join([first, *(f"{STEP_INDENT}{step_line(s)}" for s in steps)])


ANSWERED_KINDS = ("general", "search")  # answered as text: a draft is checked for an answer


class Kinds:
    """Which tasks are answered as text, as their postings stream by, so a reader of the streams
    (the monitor, the main job) tells their drafts as answers, not as programs."""

    def __init__(self, kept: int = 10_000) -> None:
        self.kept = kept
        self.answered: dict[str, None] = {}  # task ids, oldest first

    def __call__(self, event: Event) -> bool:
        """Notes `event` if it posts a task; whether it is about a task answered as text."""
        if isinstance(event, TaskPosted) and event.kind in ANSWERED_KINDS:
            self.answered[event.task_id] = None
            while len(self.answered) > self.kept:
                self.answered.pop(next(iter(self.answered)))
        return getattr(event, "task_id", None) in self.answered


STEP_INDENT = " " * 20  # under the gist, past the type column
SHOWN_TITLES = 4  # of a search's results, in its line


def step_line(step: ToolStep) -> str:
    """One step of a search agent's tool loop: what it searched and found, read, answered."""
    note = f" ({step.note})" if step.note else ""
    match step.action:
        case "search" if step.titles:
            more = (
                f" and {len(step.titles) - SHOWN_TITLES} more"
                if len(step.titles) > SHOWN_TITLES
                else ""
            )
            return f"search {step.text!r} → {'; '.join(step.titles[:SHOWN_TITLES])}{more}"
        case "search":
            return f"search {step.text!r}{note}"
        case "open" if step.titles:
            return f"read {step.titles[0]!r}"
        case "open":
            return f"open {step.text!r}{note}"
        case "answer":
            return f"answer {step.text!r}{note}"
    return f"not an action: {step.text[:60]!r}{note}"


def _loop(result: TaskResult) -> str:
    """A search result's tool loop in a few words: how many searches and reads, and the answer."""
    searches = sum(s.action == "search" for s in result.steps)
    read = sum(s.action == "open" and bool(s.titles) for s in result.steps)
    return f"{searches} search(es), {read} article(s) read, answer {result.output[:60]!r}"


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
    general or a search task's draft (its answer), whether there is one."""
    if general:
        return "an answer" if draft.examples_pass else f"no answer ({draft.failure or 'empty'})"
    if draft.examples_pass:
        return "passes the visible examples"
    reason = (draft.failure or "").strip().splitlines()
    return "fails the visible examples" + (f" ({reason[-1][:80]})" if reason else "")


def gist(event: Event, labels: Labels | None = None, answered: bool = False) -> str:
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
                f"{event.agent_id} draft: {verdict(event, answered)}, {event.plan_tokens} tokens, "
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
        case TaskResult() if event.steps:
            failed = f", error: {_one_line(event.error)[:60]}" if event.error else ""
            return (
                f"{event.agent_id} ran {name(labels, event.bid_id)} in {event.duration_s:.3g}s: "
                f"{_loop(event)}, cost {event.cost:.6g}{failed}"
            )
        case TaskResult():
            failed = f", error: {_one_line(event.error)[:60]}" if event.error else ""
            return (
                f"{event.agent_id} ran {name(labels, event.bid_id)} in {event.duration_s:.3g}s, "
                f"{len(event.output)} chars of output, cost {event.cost:.6g}{failed}"
            )
        case TaskOutcome() if event.answered:
            return "answered (a general task: nothing to check)"
        case TaskOutcome() if event.details.startswith(GRADED):
            return (
                f"{'passed' if event.passed else 'failed'}, score {event.score:g} ({event.details})"
            )
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
