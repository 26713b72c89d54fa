"""`sale report` on a hand-built log with known answers: what each task cost, by part and at
each agent's price, the run's pass@1, the auction's share and the largest agent's share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from marketplace.metrics import summarize
from marketplace.migrate import apply_migrations
from marketplace.recorder import Incoming, Position, store
from marketplace.report import largest_agent, log_runs, run_report
from schemas.events import (
    AuctionClosed,
    BidScore,
    BidSubmitted,
    CodingInputs,
    Event,
    ReviewSubmitted,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
    Weights,
)

PRICES = {"S": 1.0, "L": 4.0}


def tokens(n: int, seconds: float = 1.0) -> Usage:
    return Usage(requests=1, prompt_tokens=n, completion_tokens=0, seconds=seconds)


def task_events(task_id: str, winner: str, passed: bool, executed: int) -> list[Event]:
    posted = TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt="def f(): ...",
        inputs=CodingInputs(entry_point="f", examples=[]),
    )
    bids = {
        agent: BidSubmitted(
            producer=agent,
            task_id=task_id,
            agent_id=agent,
            model=f"m-{agent}",
            plan="1. do it",
            plan_tokens=10,
            entropy=0.5,
            price=price,
            usage=tokens(1_000),
        )
        for agent, price in PRICES.items()
    }
    reviews = [
        ReviewSubmitted(
            producer=juror,
            task_id=task_id,
            juror=juror,
            scores=[BidScore(bid_id=b.bid_id, score=3.0) for b in bids.values()],
            usage=tokens(500),
        )
        for juror in PRICES
    ]
    closed = AuctionClosed(
        producer="auctioneer",
        task_id=task_id,
        reason="awarded",
        winner_bid_id=bids[winner].bid_id,
        winner_agent_id=winner,
        winning_plan="1. do it",
        weights=Weights(),
    )
    result = TaskResult(
        producer=winner,
        task_id=task_id,
        agent_id=winner,
        bid_id=bids[winner].bid_id,
        output="def f(): ...",
        usage=tokens(executed, seconds=4.0),
    )
    outcome = TaskOutcome(producer="verifier", task_id=task_id, passed=passed, score=float(passed))
    return [posted, *bids.values(), *reviews, closed, result, outcome]


async def append(db: asyncpg.Connection, events: list[Event]) -> None:
    """Into the log as the recorder would: the events, then their projections."""
    start = await db.fetchval("SELECT count(*) FROM events")
    await store(
        db, [Incoming.of(Position("t", 0, start + i), None, e) for i, e in enumerate(events)]
    )


@pytest.fixture
async def log(db: asyncpg.Connection) -> asyncpg.Connection:
    await apply_migrations(db)
    await append(db, task_events("t-1", "S", True, executed=2_000))
    await append(db, task_events("t-2", "L", False, executed=1_000))
    return db


async def test_the_log_gives_each_task_its_runs_spend_and_the_agents_prices(log) -> None:
    runs, prices, reasons = await log_runs(log)
    assert prices == PRICES and largest_agent(prices) == "L"
    assert [(r.task_id, r.executor, r.passed) for r in runs] == [
        ("t-1", "S", True),
        ("t-2", "L", False),
    ]
    assert reasons == {"t-1": "awarded", "t-2": "awarded"}
    result = summarize("live", runs, prices, "L")
    # Per task: bids 1000·1 + 1000·4, jury 500·1 + 500·4 (per million) = 0.0075 in the auction.
    auction = 2 * 0.0075
    execution = 2_000 * 1 / 1e6 + 1_000 * 4 / 1e6
    assert result.cost == pytest.approx(auction + execution)
    assert result.auction_share == pytest.approx(auction / (auction + execution))
    assert result.pass_at_1 == 0.5 and result.largest_share == 0.5
    assert result.seconds == pytest.approx(2 * (4 * 1.0) + 4.0 + 4.0)  # 4 calls of 1 s per task


async def test_the_report_table_shows_the_same_figures(log) -> None:
    report = await run_report(log)
    assert "| t-1 | S | awarded | 0.007500 | 0.002000 | 0.009500 | 8.0 | yes |" in report
    assert "| t-2 | L | awarded | 0.007500 | 0.004000 | 0.011500 | 8.0 | no |" in report
    assert "| 2 | 1 | 50.0% | 0.021000 | 16.0 | 71.4% | 50.0% | L 1, S 1 |" in report


async def test_a_task_posted_again_is_counted_from_its_last_posting(log) -> None:
    """A job interrupted mid-auction posts the task again; its work is repeated, not added."""
    before = await run_report(log)
    later = datetime.now(UTC) + timedelta(hours=1)
    again = [
        e.model_copy(update={"occurred_at": later}) for e in task_events("t-1", "S", True, 2_000)
    ]
    await append(log, again)
    assert await run_report(log) == before


async def test_only_the_asked_tasks_are_reported(log) -> None:
    runs, _, _ = await log_runs(log, ["t-2"])
    assert [r.task_id for r in runs] == ["t-2"]
