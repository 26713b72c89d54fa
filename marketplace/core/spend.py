"""The spend rule: under which part of a task's life each priced call is booked.

A task spends on four parts: its bids ("bids": the paper auction's round-0 plans; the drafts a
lean auction asked for and did not award), the refinement round ("refinement": round-1 plans),
the jury ("jury": every review) and the execution ("execution": the winner's work). The first
three are what the auction costs (`measures.AUCTION_PARTS`): `sale report`'s auction and
execution columns and the benchmark's auction share divide there. The recorder's `spend`
table, `sale audit`, the client's `Outcome` and the benchmark all split cost with this rule.

Why a lean auction's winning draft is "execution" and not "bids": the winner's draft IS the
task's result. The agent delivers it with no further model call (its `TaskResult` spends
nothing), so booking the draft under "bids" would leave a lean task with no execution cost and
count its whole answer as the auction's overhead; the auction share would then compare a lean
auction's total with a paper auction's overhead. Every other draft is what the auction spent
to find the answer: "bids". The benchmark's replay of the lean auction books it the same way,
so a live run and its replay split alike.

Only the awarded result is the execution (`marketplace.core.award`): a result from an agent that
did not win, or a second delivery of the awarded one, spent nobody's budget the market pays
(the log keeps it; no part books it).

Pure: events in, parts out. `part` books one event when it is known whether its draft won (the
recorder's projection, meeting a draft before the close that awards it, books it as lost and
moves it once the close says it won); `spends` and `parts` book a task's events, the winners
taken from the closes among them.
"""

from __future__ import annotations

from collections.abc import Iterable

from marketplace.core.award import awarded_results
from marketplace.core.measures import Part, Spend
from schemas.events import (
    AuctionClosed,
    BidSubmitted,
    Event,
    ReviewSubmitted,
    TaskResult,
    Usage,
)

PARTS: tuple[Part, ...] = ("bids", "refinement", "jury", "execution")
RESULT_PART: Part = "execution"  # the awarded result's (`marketplace.core.award`)


def draft_part(won: bool) -> Part:
    """A lean draft's part: the winner's is the execution, any other the auction's bids."""
    return "execution" if won else "bids"


def part(event: Event, won: bool = False) -> Part | None:
    """The part `event`'s usage is booked under (None: the event spends nothing). `won`: the
    event is the draft the auction awarded (only a lean draft's part depends on it)."""
    match event:
        case BidSubmitted() if event.is_draft:
            return draft_part(won)
        case BidSubmitted():
            return "bids" if event.round == 0 else "refinement"
        case ReviewSubmitted():
            return "jury"
        case TaskResult():
            return RESULT_PART
    return None


def spends(events: Iterable[Event]) -> list[Spend]:
    """Every priced call among `events` (one task's, or several), by agent and part, in order;
    of the results, only each task's awarded one."""
    events = list(events)
    winners = {e.winner_bid_id for e in events if isinstance(e, AuctionClosed)} - {None}
    awarded = {r.event_id for r in awarded_results(events).values()}  # one per award
    booked = []
    for event in events:
        if isinstance(event, TaskResult) and event.event_id not in awarded:
            continue
        won = isinstance(event, BidSubmitted) and event.bid_id in winners
        booked_as = part(event, won)
        if booked_as is not None:
            spender = event.juror if isinstance(event, ReviewSubmitted) else event.agent_id
            booked.append(Spend(spender, booked_as, event.usage))
    return booked


def parts(events: Iterable[Event]) -> dict[Part, Usage]:
    """What `events` spent, summed by part; every part is present (a part unspent is zero)."""
    totals = {p: Usage() for p in PARTS}
    for spent in spends(events):
        totals[spent.part] += spent.usage
    return totals
