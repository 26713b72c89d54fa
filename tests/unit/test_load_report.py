"""The load test's summary: each row's columns, and the ratios issue 25 sets targets for,
computed (and judged) from the rows rather than by hand."""

from __future__ import annotations

from marketplace.performance.load_report import Measured, table
from marketplace.performance.loadtest import Rate, Row

RAW = 10_000.0


def row(per_s: float, p99_ms: float, never: float | None, in_flight: int = 16) -> Row:
    cpu = {"broker": 50.0, "auctioneer": 40.0, "called agents": 20.0, "client": 10.0}
    if never is not None:
        cpu["never called agents"] = never
    records = {"tasks": 100, "bids": 100, "auctions": 300, "results": 100, "agents": 10}
    return Row(Rate(per_s, p99_ms / 2, p99_ms), 100, in_flight, records, cpu)


def measured(
    mechanism: str, agents: int, per_s: float, p99: float, never: float | None
) -> Measured:
    return Measured(mechanism, agents, row(per_s, 0, never), row(per_s / 2, p99, never, 1024))


def test_a_row_counts_every_topics_records_per_auction() -> None:
    r = row(100, 10, 1.0)
    assert r.messages_per_auction == 6.1
    assert r.messages_per_s == 610
    assert r.per_stream() == "tasks 1.0, bids 1.0, auctions 3.0, results 1.0, agents 0.1"


def test_the_summary_says_each_lean_target_met_or_missed_and_paper_rows_stand_beside() -> None:
    text = table(
        [
            measured("lean", 4, 200, 40, 3.0),
            measured("lean", 64, 150, 90, 4.0),
            measured("paper", 4, 20, 300, None),
        ],
        RAW,
    )
    lines = text.splitlines()
    assert "  auctions/s at 64 agents ÷ at 4: 0.75 (target ≥ 0.8 at 64 ÷ 4): missed" in lines
    assert any(
        "never called, 64 agents: 4.0% of one core in all" in x and x.endswith(": met")
        for x in lines
    )
    assert any("4 agents: 12.2% of the raw broker rate" in x and x.endswith("met") for x in lines)
    assert any("64 agents: 90 ms" in x and x.endswith("missed") for x in lines)
    assert any("4 agents: 40 ms" in x and x.endswith("met") for x in lines)
    paper = [cells.split("|") for cells in lines if cells.startswith("| paper")]
    assert paper[0][12].strip() == "–"  # no agent it never calls
    after = lines[lines.index("paper:") :]
    assert not any("target" in x or "met" in x for x in after)  # targets are lean's
