"""The one spend rule (`marketplace.core.spend`) and its readers, on auctions played by the real
state machines: the projection, `sale audit` and the `Outcome` book each call alike.

The database-backed check (the recorded `spend` table against `sale audit` and `sale result`)
is `tests/integration/test_spend_parts.py`.
"""

from __future__ import annotations

from uuid import uuid4

import pytest

from marketplace.core import award, spend
from marketplace.core.measures import AUCTION_PARTS
from marketplace.log import audit
from marketplace.log.outcomes import Outcome, fold
from marketplace.log.projections import writes
from schemas.events import (
    AuctionClosed,
    BidSubmitted,
    Event,
    ReviewSubmitted,
    TaskResult,
    Usage,
)
from tests.unit.test_replay import closed_of, lean_auction, refined_auction, stored


def drafts(events: list[Event]) -> dict[str, BidSubmitted]:
    return {e.agent_id: e for e in events if isinstance(e, BidSubmitted)}


def test_a_lean_winners_draft_is_the_execution_and_every_other_draft_a_bid() -> None:
    events = lean_auction()  # small's draft fails, large's passes and wins
    assert closed_of(events).winner_agent_id == "large"
    small, large = drafts(events)["small"], drafts(events)["large"]
    [delivered] = [e for e in events if isinstance(e, TaskResult)]
    assert delivered.usage == Usage()  # the draft is the result: delivered with no call
    parts = spend.parts(events)
    assert parts["bids"] == small.usage and parts["bids"].requests == 1
    assert parts["execution"] == large.usage and parts["execution"].requests == 1
    assert parts["jury"] == parts["refinement"] == Usage()


def test_a_lean_draft_alone_is_a_bid_until_its_close_awards_it() -> None:
    events = lean_auction()
    unclosed = [e for e in events if not isinstance(e, AuctionClosed | TaskResult)]
    assert spend.parts(unclosed)["execution"] == Usage()
    assert spend.parts(events)["execution"] == drafts(events)["large"].usage


def test_the_paper_auction_books_bids_refinement_jury_and_execution() -> None:
    events = refined_auction()
    booked = {
        (s.agent_id, s.part) for s in spend.spends(events) if s.part in ("bids", "refinement")
    }
    assert booked == {("small", "bids"), ("large", "bids"), ("small", "refinement")}
    reviews = [e for e in events if isinstance(e, ReviewSubmitted)]
    assert spend.parts(events)["jury"] == sum((r.usage for r in reviews), Usage())
    assert spend.parts(events)["execution"].requests == 1


def test_nothing_is_dropped_or_counted_twice() -> None:
    for events in (lean_auction(), lean_auction(small_passes=True), refined_auction()):
        priced = (BidSubmitted, ReviewSubmitted, TaskResult)
        everything = sum((e.usage for e in events if isinstance(e, priced)), Usage())
        total = sum(spend.parts(events).values(), Usage())
        # the same calls summed in another order: the cost agrees up to rounding
        assert total.model_copy(update={"cost": everything.cost}) == everything
        assert total.cost == pytest.approx(everything.cost)
        assert set(spend.parts(events)) == {*AUCTION_PARTS, "execution"}


def projected_part(event: Event) -> tuple[str, str | None]:
    """The part the projection books `event`'s spend row as: (as lost, as won) for a draft."""
    [(statement, args)] = [w for w in writes(event) if "INSERT INTO spend" in w[0]]
    if "CASE" in statement:  # a draft: the part if it lost ($4), the part if it won ($12)
        return args[3], args[11]
    if isinstance(event, TaskResult):  # the awarded result, booked from the log: ($1, $2)
        return args[1], None
    return args[3], None


def test_the_projection_books_every_call_by_the_rule() -> None:
    for events in (lean_auction(), refined_auction()):
        for event in events:
            if spend.part(event) is None:
                continue
            draft = isinstance(event, BidSubmitted) and event.is_draft
            as_won = spend.part(event, won=True) if draft else None
            assert projected_part(event) == (spend.part(event), as_won), event.type


def test_the_close_moves_the_winning_draft_to_the_rules_part() -> None:
    closed = closed_of(lean_auction())
    [(_, (bid_id, part))] = [w for w in writes(closed) if "UPDATE spend" in w[0]]
    assert (bid_id, part) == (closed.winner_bid_id, spend.draft_part(won=True))


def cost_table(events: list[Event]) -> dict[str, list[str]]:
    """`sale audit`'s cost section: part → [requests, tokens, cost]."""
    text = audit.render(stored(events))
    lines = text.split("\ncost\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return {line.split()[0]: line.split()[1:] for line in lines}


def test_audit_and_outcome_show_the_rules_parts() -> None:
    for events in (lean_auction(), refined_auction()):
        parts = spend.parts(events)
        table = cost_table(events)
        for part, usage in parts.items():
            shown = [str(usage.requests), str(usage.total_tokens), f"{usage.cost:.6g}"]
            assert table[part] == shown
        outcome = fold(closed_of(events).task_id, events)
        assert outcome is not None and outcome.spend == parts
        assert outcome.usage == sum(parts.values(), Usage()) and outcome.cost == outcome.usage.cost


def test_an_outcome_with_nothing_spent_has_every_part_at_zero() -> None:
    assert Outcome(task_id="t", status="posted").spend == {p: Usage() for p in spend.PARTS}


def delivered_again(events: list[Event], **changes: object) -> TaskResult:
    """A copy of the task's result under a new event id, with `changes`."""
    [result] = [e for e in events if isinstance(e, TaskResult)]
    return result.model_copy(update={"event_id": uuid4(), **changes})


def test_only_the_awarded_result_is_booked_not_another_agents_nor_a_second_delivery() -> None:
    events = refined_auction()
    closed = closed_of(events)
    [result] = [e for e in events if isinstance(e, TaskResult)]
    paid = Usage(requests=1, prompt_tokens=100, completion_tokens=50, cost=0.5)
    loser = next(a for a in ("small", "large") if a != closed.winner_agent_id)
    intruder = delivered_again(events, agent_id=loser, producer=loser, usage=paid, output="x")
    again = delivered_again(events, usage=paid, output="y")
    before = spend.parts(events)
    for order in ([intruder, *events], [*events, intruder], [*events, again]):
        assert spend.parts(order) == before
        outcome = fold(closed.task_id, order)
        assert outcome.cost == sum(before.values(), Usage()).cost
        assert outcome.output == result.output


def test_a_result_before_its_close_is_booked_once_the_close_is_in() -> None:
    events = refined_auction()
    [result] = [e for e in events if isinstance(e, TaskResult)]
    unclosed = [e for e in events if not isinstance(e, AuctionClosed)]
    assert spend.parts(unclosed)["execution"] == Usage()  # nothing awarded yet
    assert fold(result.task_id, unclosed).output is None
    assert spend.parts(events)["execution"] == result.usage


def test_each_award_counts_its_first_result_and_a_result_for_no_award_counts_nothing() -> None:
    events = refined_auction()
    [result] = [e for e in events if isinstance(e, TaskResult)]
    closed = closed_of(events)
    unawarded = delivered_again(events, bid_id=uuid4())
    later = [e for e in events if e is not result] + [unawarded, result]
    award_made = (closed.task_id, closed.winner_agent_id, closed.winner_bid_id)
    assert award.awarded_results(later) == {award_made: result}
    assert spend.parts(later) == spend.parts(events)
