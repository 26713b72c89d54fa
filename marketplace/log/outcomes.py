"""What became of one task, as the one who posted it sees it: the `Outcome`, folded from the
task's events.

The client (`marketplace.client`) folds the events it watches as they stream by, and
`Client.result` folds the task's part of the log; both with `fold`, so a waiting client and a
later look-up say the same thing. Pure: events in, an `Outcome` out. The events may come in any
order (they travel on different topics), so each part of the outcome comes from its own event.

Statuses, in the order a task goes through them: `posted` (the task, no auction yet), `open`
(the auction is running), `awarded` (a winner, no result yet), `delivered` (a result, not yet
judged); then one of the final ones: `passed` or `failed` (the verifier ran the hidden checks),
`answered` (a general task: there is nothing to check), `no_bids` or `no_eligible_bids` (the
auction closed without a winner) or `refused` (the auction refused the task, e.g. over its
budget: `reason` and `detail` say why).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from marketplace.core.award import result_of
from marketplace.core.measures import Part
from marketplace.core.spend import parts
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidRequested,
    BidSubmitted,
    Event,
    JuryCalled,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
)

Status = Literal[
    "posted",
    "open",
    "awarded",
    "delivered",
    "passed",
    "failed",
    "answered",
    "no_bids",
    "no_eligible_bids",
    "refused",
]
FINAL: frozenset[str] = frozenset(
    {"passed", "failed", "answered", "no_bids", "no_eligible_bids", "refused"}
)
REFUSALS = frozenset({"over_budget"})  # AuctionClosed reasons that refuse the task


class Outcome(BaseModel):
    """A task's answer and what it cost, so far. `spend` is what the task spent by part (bids,
    refinement, jury, execution), booked by the rule the log's `spend` table and `sale audit`
    book by (`marketplace.core.spend`); `cost` and `usage` are its totals."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    status: Status
    kind: str | None = None
    tenant: str | None = None
    passed: bool | None = None
    score: float | None = None
    winner_agent_id: str | None = None
    model: str | None = None
    output: str | None = None
    error: str | None = None
    cost: float = 0.0
    usage: Usage = Usage()
    spend: dict[Part, Usage] = Field(default_factory=lambda: parts([]))
    reason: str | None = None
    detail: str = ""
    mechanism: str | None = None

    @property
    def final(self) -> bool:
        """Nothing more will happen to the task."""
        return self.status in FINAL


def fold(task_id: str, events: Iterable[Event]) -> Outcome | None:
    """The outcome of `task_id` so far from `events` (others' events are ignored); None when
    none of them is about the task."""
    mine = [e for e in events if getattr(e, "task_id", None) == task_id]
    if not mine:
        return None
    posted = _first(mine, TaskPosted)
    closed = _first(mine, AuctionClosed)
    outcome = _first(mine, TaskOutcome)
    result = _result(mine, closed)
    winner = _winning_bid(mine, closed)
    spent = parts(mine)
    usage = sum(spent.values(), Usage())
    return Outcome(
        task_id=task_id,
        status=_status(mine, closed, result, outcome),
        kind=posted.kind if posted else None,
        tenant=posted.tenant if posted else None,
        passed=outcome.passed if outcome else None,
        score=outcome.score if outcome else None,
        winner_agent_id=closed.winner_agent_id if closed else None,
        model=winner.model if winner else None,
        output=result.output if result else None,
        error=result.error if result else None,
        cost=usage.cost,
        usage=usage,
        spend=spent,
        reason=closed.reason if closed else None,
        detail=_detail(closed, outcome),
        mechanism=closed.mechanism if closed else None,
    )


def complete(task_id: str, events: Iterable[Event]) -> bool:
    """Whether every event the task's outcome waits for is in: the close, and with a winner
    its bid, its result and the verifier's outcome."""
    mine = [e for e in events if getattr(e, "task_id", None) == task_id]
    closed = _first(mine, AuctionClosed)
    if closed is None:
        return False
    if closed.winner_bid_id is None:
        return True
    return (
        _winning_bid(mine, closed) is not None
        and _result(mine, closed) is not None
        and _first(mine, TaskOutcome) is not None
    )


def _first(events: list[Event], kind: type) -> Event | None:
    return next((e for e in events if isinstance(e, kind)), None)


def _result(events: list[Event], closed: AuctionClosed | None) -> TaskResult | None:
    """The awarded result (`marketplace.core.award`): the winner's first for the winning bid.
    Another agent's, a second delivery, or any before the close is in, is not the answer."""
    if closed is None:
        return None
    return result_of(closed, events)


def _winning_bid(events: list[Event], closed: AuctionClosed | None) -> BidSubmitted | None:
    if closed is None or closed.winner_bid_id is None:
        return None
    return next(
        (e for e in events if isinstance(e, BidSubmitted) and e.bid_id == closed.winner_bid_id),
        None,
    )


def _status(
    events: list[Event],
    closed: AuctionClosed | None,
    result: TaskResult | None,
    outcome: TaskOutcome | None,
) -> Status:
    if closed is not None and closed.reason in REFUSALS:
        return "refused"
    if closed is not None and closed.winner_agent_id is None:
        return closed.reason
    if outcome is not None:
        return "answered" if outcome.passed is None else "passed" if outcome.passed else "failed"
    if result is not None:
        return "delivered"
    if closed is not None:
        return "awarded"
    running = (AuctionOpened, BidRequested, BidSubmitted, JuryCalled)
    return "open" if any(isinstance(e, running) for e in events) else "posted"


def _detail(closed: AuctionClosed | None, outcome: TaskOutcome | None) -> str:
    """Why: the refusal, else the verifier's details, else why a lean auction stopped."""
    if closed is not None and closed.reason in REFUSALS:
        return closed.detail
    if outcome is not None:
        return outcome.details
    if closed is not None and closed.lean is not None:
        return closed.lean.why
    return ""
