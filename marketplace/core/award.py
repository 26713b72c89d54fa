"""The award rule: which `TaskResult` a task's award is delivered by.

The auction awards a task to one agent's bid (`AuctionClosed.winner_agent_id`,
`winner_bid_id`; in the lean auction the bid is the winning draft's), so the award's result is
that agent's result for that bid, and only its first one. A result from any other agent, or for
another bid, or a second delivery of the awarded one (another event id: a replayed award made
the winner work again) is not the task's result: it is graded by nobody, paid for by nobody and
shown to nobody; the log keeps it as the trail of what was tried. "First" is the order of the
`results` stream (one partition per task), which is the order the recorder appends in. (A task
posted again under its id is auctioned again: each award has its result.)

The verifier grades by this rule, the spend rule (`marketplace.core.spend`), the `Outcome` and
the recorder's projections count by it, and `sale replay --verify` checks the log against it.
Pure: events in, the awarded result (or why a result is not it) out.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from schemas.events import AuctionClosed, Event, TaskResult


def matches(closed: AuctionClosed, result: TaskResult) -> bool:
    """`result` is the award's: the winner's agent, for the winning bid, of the same task."""
    return (
        closed.winner_agent_id is not None
        and result.task_id == closed.task_id
        and result.agent_id == closed.winner_agent_id
        and result.bid_id == closed.winner_bid_id
    )


def why_not(closed: AuctionClosed, result: TaskResult) -> str:
    """Why `result` is not the award's (for a refusal's reason); "" when it matches."""
    if matches(closed, result):
        return ""
    if closed.winner_agent_id is None:
        return f"the auction closed without a winner ({closed.reason}): nothing to deliver"
    if result.agent_id != closed.winner_agent_id:
        return (
            f"not the winner: {result.agent_id} delivered, the award is "
            f"{closed.winner_agent_id}'s (bid {closed.winner_bid_id})"
        )
    return f"not the winning bid: bid {result.bid_id}, the award is bid {closed.winner_bid_id}"


def second(first: TaskResult, result: TaskResult) -> str:
    """The reason a second result for an award is refused."""
    return (
        f"a second result for the award: {result.agent_id}'s first, {first.event_id}, "
        f"is the one that counts"
    )


Award = tuple[str, str, UUID]  # task, winner agent, winning bid


def award_of(event: AuctionClosed | TaskResult) -> Award | None:
    """The award a close makes (None: no winner), or the one a result claims to deliver."""
    if isinstance(event, AuctionClosed):
        if event.winner_agent_id is None or event.winner_bid_id is None:
            return None
        return event.task_id, event.winner_agent_id, event.winner_bid_id
    return event.task_id, event.agent_id, event.bid_id


def awarded_results(events: Iterable[Event]) -> dict[Award, TaskResult]:
    """Each award among `events` with its result: the first (in the order given) of the
    winner's results for the winning bid. An award not delivered yet is not in it."""
    events = list(events)
    made = {award_of(e) for e in events if isinstance(e, AuctionClosed)} - {None}
    delivered: dict[Award, TaskResult] = {}
    for event in events:
        if isinstance(event, TaskResult) and award_of(event) in made:
            delivered.setdefault(award_of(event), event)
    return delivered


def result_of(closed: AuctionClosed, events: Iterable[Event]) -> TaskResult | None:
    """The result of `closed`'s award among `events` (None: no winner, or not delivered)."""
    return awarded_results([closed, *events]).get(award_of(closed))
