"""`sale report` on a hand-built log with known answers: what each task cost, by part and at
each agent's prices per direction, the run's pass@1, the auction's share and the largest agent's
share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from marketplace.core.measures import cost, summarize
from marketplace.log.store import Incoming, Position, store
from marketplace.log.summary import largest_agent, log_runs, run_report
from marketplace.shared.migrate import apply_migrations
from schemas.events import (
    AgentHeartbeat,
    AuctionClosed,
    BidScore,
    BidSubmitted,
    CodingInputs,
    Event,
    GeneralInputs,
    Price,
    ReviewSubmitted,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
    Weights,
)

BID_PRICES = {"S": 1.0, "L": 4.0}  # as the agents bid them; the log has no other price here
PRICES = {agent: Price(input=p, output=p) for agent, p in BID_PRICES.items()}


def tokens(n: int, seconds: float = 1.0) -> Usage:
    return Usage(requests=1, prompt_tokens=n, completion_tokens=0, seconds=seconds)


def task_events(
    task_id: str,
    winner: str,
    passed: bool | None,
    executed: int | Usage,
    bid_prices: dict[str, float] = BID_PRICES,
) -> list[Event]:
    """A whole auction among the agents of `bid_prices`; the winner's result used `executed`
    prompt tokens (or that usage). `passed` None: a general task, answered and not graded."""
    general = passed is None
    posted = TaskPosted(
        producer="client",
        task_id=task_id,
        kind="general" if general else "coding",
        prompt="Name a prime." if general else "def f(): ...",
        inputs=GeneralInputs() if general else CodingInputs(entry_point="f", examples=[]),
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
        for agent, price in bid_prices.items()
    }
    reviews = [
        ReviewSubmitted(
            producer=juror,
            task_id=task_id,
            juror=juror,
            scores=[BidScore(bid_id=b.bid_id, score=3.0) for b in bids.values()],
            usage=tokens(500),
        )
        for juror in bid_prices
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
        usage=tokens(executed, seconds=4.0) if isinstance(executed, int) else executed,
    )
    score = None if general else float(passed)
    outcome = TaskOutcome(producer="verifier", task_id=task_id, passed=passed, score=score)
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


def heartbeat(agent: str, output: float, input_: float | None) -> AgentHeartbeat:
    return AgentHeartbeat(
        producer=agent,
        agent_id=agent,
        model=f"m-{agent}",
        price=output,
        input_price=input_,
        kinds=["coding"],
    )


# The L's result of t-3: 3000 prompt tokens (1000 of them held) and 2000 generated.
MIXED = Usage(requests=1, prompt_tokens=3_000, cached_tokens=1_000, completion_tokens=2_000)


async def test_a_result_is_costed_per_direction_at_the_heartbeats_prices(db) -> None:
    """Heartbeats tell each agent's output and input prices; every call is priced per
    direction (held tokens at the input price: the log has no cached price)."""
    await apply_migrations(db)
    await append(db, [heartbeat("S", 2.0, 0.5), heartbeat("L", 8.0, None)])
    await append(db, task_events("t-3", "L", True, executed=MIXED))
    runs, prices, _ = await log_runs(db)
    assert prices == {"S": Price(input=0.5, output=2.0), "L": Price(input=8.0, output=8.0)}
    [run] = runs
    [executed] = [s for s in run.spend if s.part == "execution"]
    assert executed.usage.model_dump(exclude={"cost", "seconds"}) == MIXED.model_dump(
        exclude={"cost", "seconds"}
    )
    result = summarize("live", runs, prices, largest_agent(prices))
    bids = 1_000 * 0.5 + 1_000 * 8.0  # prompt tokens only (see `tokens`)
    jury = 500 * 0.5 + 500 * 8.0
    execution = 3_000 * 8.0 + 2_000 * 8.0
    assert result.cost == pytest.approx((bids + jury + execution) / 1e6)
    assert result.auction_cost == pytest.approx((bids + jury) / 1e6)


async def test_the_callers_prices_replace_the_logs_and_price_held_tokens_apart(db) -> None:
    await apply_migrations(db)
    await append(db, task_events("t-3", "L", True, executed=MIXED))
    prices = {
        "S": Price(input=1.0, output=3.0),
        "L": Price(input=4.0, output=12.0, cached_input=2.0),
    }
    runs, used, _ = await log_runs(db, prices=prices)
    assert used == prices
    [run] = runs
    execution = (2_000 * 4.0 + 1_000 * 2.0 + 2_000 * 12.0) / 1e6  # fresh, held, generated
    spent = [s for s in run.spend if s.part == "execution"]
    assert cost(spent, prices) == pytest.approx(execution)
    report = await run_report(db, prices=prices)
    assert f"| t-3 | L | awarded | 0.007500 | {execution:.6f} |" in report
    assert "input/output prices per million tokens (L 4/12 (cached 2), S 1/3)" in report


async def test_an_agent_not_in_the_config_is_priced_as_the_log_tells_and_named(log) -> None:
    """A foreign agent (not in the config's [[agents]]) joined and won a task: the report
    prices its spend at its heartbeat's prices instead of failing, and says it is not listed."""
    await append(log, [heartbeat("foreign", 2.0, 0.5)])
    await append(log, task_events("t-9", "foreign", True, 1_000, {"foreign": 2.0, "L": 4.0}))
    report = await run_report(log, prices=PRICES)  # the config's: S and L only
    # bids 1000 prompt tokens at 0.5 (foreign's input price) and 4, jury 500 at each
    auction = (1_000 * 0.5 + 1_000 * 4.0 + 500 * 0.5 + 500 * 4.0) / 1e6
    execution = 1_000 * 0.5 / 1e6
    total = f"{auction + execution:.6f}"
    assert f"| t-9 | foreign | awarded | {auction:.6f} | {execution:.6f} | {total} |" in report
    assert "Not in the config's [[agents]]" in report and "foreign (at 0.5/2)" in report
    assert "| 3 | 2 | 66.7% |" in report  # counted with the others


async def test_general_tasks_are_reported_answered_and_not_graded(log) -> None:
    """A general task has no pass or fail: it gets a section of its own that says so, and
    stays out of pass@1, which the graded tasks alone make."""
    before = await run_report(log)
    await append(log, task_events("ask-1", "S", None, executed=3_000))
    report = await run_report(log)
    assert report.startswith(before.split("\n\nCosts at")[0])  # the graded tables unchanged
    assert "1 general task, answered and not graded" in report
    assert "left out of pass@1 and the totals" in report
    assert "| ask-1 | S | awarded | 0.007500 | 0.003000 | 0.010500 | 8.0 |\n" in report
    only = await run_report(log, ["ask-1"])
    assert only.startswith("1 general task") and "No finished tasks" not in only
