"""Graded = awarded, tried as a dishonest registered agent would: the verifier grades only the
award's result, and the recorder's projections and `sale result` count only its cost.

Every record is signed with its principal's real key (the `keyring` of test_signing: agents
`a` and `b`, the auctioneer, the verifier, the recorder): the attacker is a registered agent,
so signatures do not stop it; the market's own rule must. The auction's close is published as
the auctioneer would (its key), so a test decides who wins and when the award is read. Each of
these tests fails on the verifier and projections that graded and booked whichever result came.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from marketplace.client import lookup
from marketplace.log.outcomes import Outcome
from marketplace.services.recorder import Recorder
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig, Config, DatabaseConfig
from schemas.events import (
    AuctionClosed,
    DeadLetter,
    Event,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskResult,
    Usage,
)
from schemas.topics import Topics
from tests.integration.inbox import Inbox
from tests.integration.test_signing import keyring, refused  # noqa: F401 (a fixture)
from tests.integration.test_verifier import read_through, verifying

pytestmark = pytest.mark.integration

PAID = Usage(requests=1, prompt_tokens=200, completion_tokens=100, cost=0.25)


def answer(task_id: str, agent_id: str, output: str, bid_id: uuid.UUID) -> TaskResult:
    return TaskResult(
        producer=agent_id,
        task_id=task_id,
        agent_id=agent_id,
        bid_id=bid_id,
        output=output,
        usage=PAID,
        cost=PAID.cost,
    )


def close(task_id: str, winner: str, bid_id: uuid.UUID) -> AuctionClosed:
    return AuctionClosed(
        producer="auctioneer",
        task_id=task_id,
        reason="awarded",
        winner_agent_id=winner,
        winner_bid_id=bid_id,
    )


@dataclass
class Stack:
    """A verifier and a recorder running, each principal's bus, and a watcher of outcomes and
    dead letters."""

    buses: dict[str, Bus]
    watch: Inbox
    verifier: object
    database: str
    config: Config

    async def send(self, *events: Event) -> None:
        for event in events:
            await self.buses[event.producer].publish(event)

    def outcomes(self, task_id: str) -> list[TaskOutcome]:
        return [o for o in self.watch.of(TaskOutcome) if o.task_id == task_id]

    async def outcome(self, task_id: str) -> TaskOutcome:
        await self.watch.wait_until(lambda _: bool(self.outcomes(task_id)), 60)
        return self.outcomes(task_id)[0]

    async def refusal(self, event: Event) -> DeadLetter:
        await self.watch.wait_until(lambda _: bool(refused(self.watch, event)), 30)
        return refused(self.watch, event)[0]

    async def recorded(self, *events: Event) -> None:
        """Waits until the recorder has stored each of `events` in the log."""
        ids = [e.event_id for e in events]
        conn = await asyncpg.connect(self.database)
        try:
            async with asyncio.timeout(60):
                while True:
                    if await conn.fetchval("SELECT to_regclass('events')") is not None:
                        query = "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])"
                        if await conn.fetchval(query, ids) == len(ids):
                            return
                    await asyncio.sleep(0.1)
        finally:
            await conn.close()

    async def spent(self, task_id: str) -> list[tuple[uuid.UUID, str, float]]:
        """The task's rows of the `spend` projection: event id, part, cost."""
        conn = await asyncpg.connect(self.database)
        try:
            rows = await conn.fetch(
                "SELECT event_id, part, cost FROM spend WHERE task_id = $1", task_id
            )
            kept = await conn.fetch("SELECT event_id FROM results WHERE task_id = $1", task_id)
        finally:
            await conn.close()
        assert [r["event_id"] for r in kept] == [r["event_id"] for r in rows]
        return [(r["event_id"], r["part"], r["cost"]) for r in rows]

    async def result(self, task_id: str) -> Outcome:
        """What `sale result` shows (the log in Postgres, folded)."""
        outcome = await lookup.result(self.config, task_id)
        assert outcome is not None
        return outcome


@asynccontextmanager
async def recording(broker_config: BrokerConfig, database: str) -> AsyncIterator[None]:
    stop = asyncio.Event()
    recorder = Recorder(Config(broker=broker_config), Bus(broker_config, "recorder"), database)
    running = asyncio.create_task(recorder.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)


@pytest.fixture
async def stack(
    broker_config: BrokerConfig,
    topics: Topics,
    keyring: Path,  # noqa: F811 (the fixture imported above)
    fresh_database: str,
) -> AsyncIterator[Stack]:
    watch = Inbox()
    watcher = Bus(broker_config, producer="watcher")
    watcher.subscribe(["outcomes", "dlq"], f"watch-{uuid.uuid4().hex[:6]}", watch)
    names = ("client", "auctioneer", "a", "b")
    buses = {name: Bus(broker_config, name) for name in names}
    config = Config(broker=broker_config, database=DatabaseConfig(url=fresh_database))
    async with watcher:
        for bus in buses.values():
            await bus.start()
        try:
            await watcher.joined()
            running = recording(broker_config, fresh_database), verifying(broker_config)
            async with running[0], running[1] as verifier:
                yield Stack(buses, watch, verifier, fresh_database, config)
        finally:
            for bus in buses.values():
                await bus.stop()


def checks(task_id: str) -> TaskChecks:
    return TaskChecks(producer="client", task_id=task_id, checks=SearchChecks(answers=["Paris"]))


async def test_the_verifier_grades_the_winners_result_not_a_non_winners_sent_before_the_close(
    stack: Stack,
) -> None:
    """`b` did not win, and sends the right answer before the auction closes; the winner `a`
    answers wrongly after the award. The outcome is `a`'s (failed), names `a`'s result; `b`'s
    is refused, and costs nothing in the spend table or `sale result`."""
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    winning_bid = uuid.uuid4()
    intruder = answer(task_id, "b", "Paris", uuid.uuid4())
    winner = answer(task_id, "a", "London", winning_bid)
    await stack.send(checks(task_id), intruder)
    await read_through(stack.verifier, "results", 1)
    await asyncio.sleep(0.5)
    awarded = close(task_id, "a", winning_bid)
    await stack.send(awarded, winner)
    outcome = await stack.outcome(task_id)
    letter = await stack.refusal(intruder)
    await stack.recorded(intruder, awarded, winner, outcome)
    assert (outcome.passed, outcome.result_event_id) == (False, winner.event_id)
    assert "not the winner: b delivered, the award is a's" in letter.error
    assert await stack.spent(task_id) == [(winner.event_id, "execution", PAID.cost)]
    shown = await stack.result(task_id)
    assert (shown.status, shown.winner_agent_id, shown.output) == ("failed", "a", "London")
    assert shown.cost == PAID.cost
    await asyncio.sleep(0.5)
    assert len(stack.outcomes(task_id)) == 1


async def test_the_verifier_holds_the_winners_result_sent_before_the_award_and_grades_it_after(
    stack: Stack,
) -> None:
    """The winner delivers before the award is out: its result waits (no outcome, no cost)
    and is graded, and booked, once the award comes."""
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    winning_bid = uuid.uuid4()
    early = answer(task_id, "a", "Paris", winning_bid)
    await stack.send(checks(task_id), early)
    await read_through(stack.verifier, "results", 1)
    await stack.recorded(early)
    await asyncio.sleep(1.0)  # an outcome, if one were being made, would be out by now
    assert stack.outcomes(task_id) == []
    assert await stack.spent(task_id) == []  # nothing awarded yet: nothing booked
    awarded = close(task_id, "a", winning_bid)
    await stack.send(awarded)
    outcome = await stack.outcome(task_id)
    await stack.recorded(awarded, outcome)
    assert (outcome.passed, outcome.result_event_id) == (True, early.event_id)
    assert await stack.spent(task_id) == [(early.event_id, "execution", PAID.cost)]
    assert not [d for d in stack.watch.of(DeadLetter) if str(early.event_id) in d.error]


async def test_the_verifier_refuses_a_second_result_of_the_winner_and_it_is_paid_once(
    stack: Stack,
) -> None:
    """A replayed award made the winner deliver again (a new event id): the second result is
    refused, changes no outcome, and the task's cost in the spend table and `sale result` is
    the first result's alone."""
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    winning_bid = uuid.uuid4()
    first = answer(task_id, "a", "Paris", winning_bid)
    again = answer(task_id, "a", "London", winning_bid)
    awarded = close(task_id, "a", winning_bid)
    await stack.send(checks(task_id), awarded, first)
    outcome = await stack.outcome(task_id)
    await stack.send(again)
    letter = await stack.refusal(again)
    await stack.recorded(awarded, first, again, outcome)
    assert (outcome.passed, outcome.result_event_id) == (True, first.event_id)
    assert "a second result for the award" in letter.error
    assert await stack.spent(task_id) == [(first.event_id, "execution", PAID.cost)]
    shown = await stack.result(task_id)
    assert (shown.status, shown.output, shown.cost) == ("passed", "Paris", PAID.cost)
    assert shown.spend["execution"] == PAID
    await asyncio.sleep(0.5)
    assert len(stack.outcomes(task_id)) == 1
