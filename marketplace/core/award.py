"""The award rule: which `TaskResult` a task's award is delivered by.

The auction awards a task to one agent's bid (`AuctionClosed.winner_agent_id`,
`winner_bid_id`; in the lean auction the bid is the winning draft's), so the task's result is
the winner's first result for the task, and only if it is for the winning bid. A result from any
other agent, or any later result of the winner (a second delivery: another event id), is not
the task's result: it is graded by nobody, paid for by nobody and shown to nobody; the log keeps
it as the trail of what was tried. "First" is the order of the `results` stream (one partition
per task), which is the order the recorder appends in: the verifier, whichever of the award and
the results it reads first, and the recorder, whichever it stores first, pick the same one.

The verifier grades by this rule, the spend rule (`marketplace.core.spend`), the `Outcome` and
the recorder's projections count by it, and `sale replay --verify` checks the log against it.
Pure: events in, the awarded result (or why a result is not it) out.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    """The reason a second result of the winner is refused."""
    return (
        f"a second result for the award: {result.agent_id}'s first result, {first.event_id}, "
        f"is the one that counts"
    )


def awarded_results(events: Iterable[Event]) -> dict[str, TaskResult]:
    """Per task, its awarded result among `events`: the winner's first result (in the order
    given), if it matches the task's first close. A task without a close, or whose close has
    no winner, or whose winner delivered nothing or first for another bid, has none."""
    events = list(events)
    closes: dict[str, AuctionClosed] = {}
    for event in events:
        if isinstance(event, AuctionClosed):
            closes.setdefault(event.task_id, event)
    firsts = winners_first(closes, events)
    return {t: r for t, r in firsts.items() if matches(closes[t], r)}


def winners_first(
    closes: dict[str, AuctionClosed], events: Iterable[Event]
) -> dict[str, TaskResult]:
    """Per task of `closes`, the first result its winner delivered (for any bid)."""
    firsts: dict[str, TaskResult] = {}
    for event in events:
        if isinstance(event, TaskResult) and event.task_id not in firsts:
            closed = closes.get(event.task_id)
            if closed is not None and event.agent_id == closed.winner_agent_id:
                firsts[event.task_id] = event
    return firsts
