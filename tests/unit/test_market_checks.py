"""`sale replay --verify`'s rules of the market (`marketplace.log.replay.market_checks`): one
outcome per award, graded on the awarded result, one result per award; each breach names the
event that breaks it."""

from __future__ import annotations

from uuid import uuid4

from marketplace.log.replay import verify
from marketplace.log.replay.market_checks import check_awards
from schemas.events import Event, TaskOutcome, TaskResult
from tests.unit.test_replay import closed_of, refined_auction


def auction() -> list[Event]:
    """A paper auction, refined and delivered, not yet graded."""
    return [e for e in refined_auction() if not isinstance(e, TaskOutcome)]


def graded(events: list[Event], result: TaskResult) -> TaskOutcome:
    return TaskOutcome(
        producer="verifier",
        task_id=result.task_id,
        passed=True,
        score=1.0,
        result_event_id=result.event_id,
    )


def awarded(events: list[Event]) -> TaskResult:
    [result] = [e for e in events if isinstance(e, TaskResult)]
    return result


def test_an_outcome_on_the_awarded_result_or_without_one_verifies() -> None:
    events = auction()
    assert check_awards([*events, graded(events, awarded(events))]) == []
    old = TaskOutcome(producer="verifier", task_id=awarded(events).task_id, passed=False, score=0)
    assert check_awards([*events, old]) == []  # no result named: an old log, or "no result"


def test_an_outcome_on_a_non_winners_result_is_named() -> None:
    events = auction()
    loser = next(a for a in ("small", "large") if a != closed_of(events).winner_agent_id)
    intruder = awarded(events).model_copy(
        update={"event_id": uuid4(), "agent_id": loser, "producer": loser, "bid_id": uuid4()}
    )
    outcome = graded(events, intruder)
    [found] = check_awards([intruder, *events, outcome])
    assert found.field == f"TaskOutcome {outcome.event_id}"
    assert f"graded TaskResult {intruder.event_id} of {loser}" in str(found)
    assert f"the award's result, {awarded(events).event_id}" in str(found)
    assert found in verify([intruder, *events, outcome])


def test_a_second_delivery_and_a_second_outcome_are_named() -> None:
    events = auction()
    first = awarded(events)
    again = first.model_copy(update={"event_id": uuid4()})
    outcome = graded(events, first)
    twice = outcome.model_copy(update={"event_id": uuid4()})
    found = check_awards([*events, again, outcome, twice])
    assert [d.field for d in found] == [
        f"TaskResult {again.event_id}",
        f"TaskOutcome {twice.event_id}",
    ]
    assert f"the first, {first.event_id}, counts" in str(found[0])
    graded_again = check_awards([*events, again, graded(events, again)])
    assert f"graded TaskResult {again.event_id}" in str(graded_again[1])
