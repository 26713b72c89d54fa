"""The trace's arithmetic: a hop's stages add up to the time between the two sends, and the
critical path follows the causes from the close back to the task."""

from __future__ import annotations

import pytest

from marketplace.performance.trace import Traced, critical_path, hop
from tests.samples import every_event

EVENTS = {
    e.type: e for e in reversed(every_event(task_id="t")) if getattr(e, "task_id", "t") == "t"
}


def traced(kind: str, **stamp: object) -> Traced:
    return Traced(EVENTS[kind], {"by": "x", **stamp})


def test_a_hop_splits_the_time_between_two_sends_into_its_stages() -> None:
    posted = traced("TaskPosted", sent=10.0)
    bid = traced("BidSubmitted", free=10.004, commit=0.003, fetched=10.006, sent=10.007)
    stages = hop(posted, bid).ms
    assert stages == pytest.approx({"busy": 1, "commit": 3, "fetch": 2, "handle": 1, "act": 0})
    assert sum(stages.values()) == pytest.approx(7)


def test_a_consumer_free_before_the_send_waited_for_nothing_and_folds_then_acts() -> None:
    bid = traced("BidSubmitted", sent=10.0)
    jury = traced("JuryCalled", free=9.0, commit=0.5, fetched=10.002, folded=10.003, sent=10.01)
    stages = hop(bid, jury).ms
    assert stages == pytest.approx({"busy": 0, "commit": 0, "fetch": 2, "handle": 1, "act": 7})


def test_the_critical_path_runs_from_the_task_to_its_close_along_the_causes() -> None:
    at = {"free": 0.0, "fetched": 0.0, "commit": 0.0}
    records = {
        ("tasks", 0, 0): traced("TaskPosted", sent=0.0),
        ("bids", 0, 0): traced("BidSubmitted", cause=["tasks", 0, 0], sent=1.0, **at),
        ("bids", 0, 1): traced("BidSubmitted", cause=["tasks", 0, 9], sent=1.0, **at),
        ("auctions", 0, 0): traced("AuctionClosed", cause=["bids", 0, 0], sent=2.0, **at),
    }
    path = critical_path(records, "t")
    assert [(h.cause.event.type, h.answer.event.type) for h in path] == [
        ("TaskPosted", "BidSubmitted"),
        ("BidSubmitted", "AuctionClosed"),
    ]
    assert critical_path(records, "another task") == []
