"""The ingest benchmark's workload: exactly N events, whole auctions that replay verifies clean."""

from __future__ import annotations

from marketplace.log import replay
from marketplace.performance import ingest
from schemas.events import AuctionClosed


def test_the_workload_has_exactly_n_events_and_verifies_clean() -> None:
    events = ingest.workload(500)
    assert len(events) == 500
    closed = [e for e in events if isinstance(e, AuctionClosed)]
    assert len(closed) >= 20
    assert {c.reason for c in closed} == {"refined"}  # every phase of an auction runs
    assert replay.verify(events) == []


def test_the_workload_can_end_mid_auction() -> None:
    size = len(ingest.auction("t", ingest.workload(1)[0].occurred_at))
    assert len(ingest.workload(size + 3)) == size + 3
