"""What each event writes to the projections, pure: no database."""

from __future__ import annotations

import re

import pytest

from marketplace.log.projections import writes
from schemas.events import (
    AgentHeartbeat,
    BidSubmitted,
    DeadLetter,
    Event,
    JuryCalled,
    TaskChecks,
    TaskPosted,
)
from tests.samples import every_event


def placeholders(statement: str) -> int:
    return max((int(n) for n in re.findall(r"\$(\d+)", statement)), default=0)


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_every_write_gives_its_statement_exactly_the_arguments_it_takes(event: Event) -> None:
    for statement, args in writes(event):
        assert placeholders(statement) == len(args), statement


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_writes_are_a_function_of_the_event_alone(event: Event) -> None:
    assert writes(event) == writes(event.model_copy())


def test_events_the_projections_do_not_keep_write_nothing() -> None:
    kept_only_in_the_log = (TaskChecks, JuryCalled, AgentHeartbeat, DeadLetter)
    for event in every_event():
        if isinstance(event, kept_only_in_the_log):
            assert writes(event) == [], event.type


def test_a_posted_task_is_an_auction_row_and_a_bid_is_a_bid_row_and_its_spend() -> None:
    events = every_event("he-7")
    posted = next(e for e in events if isinstance(e, TaskPosted))
    [(statement, args)] = writes(posted)
    assert "INSERT INTO auctions" in statement and args[:2] == ("he-7", posted.kind)
    bid = next(e for e in events if isinstance(e, BidSubmitted) and not e.is_draft)
    (bid_statement, _), (spend_statement, spend) = writes(bid)
    assert "INSERT INTO bids" in bid_statement and "INSERT INTO spend" in spend_statement
    assert spend[:4] == (
        bid.event_id,
        "he-7",
        bid.agent_id,
        "bids" if bid.round == 0 else "refinement",
    )
