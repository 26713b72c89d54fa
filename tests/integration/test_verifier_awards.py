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
import base64
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from marketplace.client import lookup
from marketplace.log.outcomes import Outcome
from marketplace.log.store import Incoming, Position, store
from marketplace.services.recorder import Recorder
from marketplace.shared import signing
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig, Config, DatabaseConfig
from marketplace.shared.migrate import apply_migrations
from schemas.events import (
    AuctionClosed,
    CodingInputs,
    DeadLetter,
    Event,
    GeneralChecks,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
)
from schemas.topics import Topics
from tests.integration.inbox import Inbox
from tests.integration.test_signing import keyring, refused  # noqa: F401 (a fixture)
from tests.integration.test_verifier import read_through, verifying
from tests.unit.test_replay import refined_auction

pytestmark = pytest.mark.integration

_batches = itertools.count()  # positions in the log stay unique across stored batches
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


# --- the log: the recorder in any order, and replay --verify ------------------------------------


def stored(events: list[Event], signed: bool = True) -> list[Incoming]:
    """`events` as the recorder appends them, at positions of their own, each signed with its
    producer's real key (or not signed)."""
    rows = []
    for offset, event in enumerate(events):
        where = Position(Topics().for_event(event), 0, offset + 1000 * next(_batches))
        if not signed:
            rows.append(Incoming.of(where, b"k", event))
            continue
        headers = signing.current().signer(event.producer).headers(event)
        signature = base64.b64decode(headers[signing.SIGNATURE_HEADER])
        rows.append(Incoming.of(where, b"k", event, headers[signing.KEY_ID_HEADER], signature))
    return rows


async def store_log(database: str, *batches: list[Event], signed: bool = True) -> None:
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        for batch in batches:
            await store(conn, stored(batch, signed))
    finally:
        await conn.close()


async def test_the_recorder_books_the_awarded_result_once_whatever_the_order(
    fresh_database: str,
    keyring: Path,  # noqa: F811
) -> None:
    """Result before award, award before result, both in one batch either way, a non-winner's
    result and a second delivery around them: the spend table holds the awarded result's cost
    once and `results` its row alone."""
    orders = {
        "result first": lambda c, r, x, y: [[x, r], [c], [y]],
        "award first": lambda c, r, x, y: [[c], [x, r, y]],
        "one batch, result first": lambda c, r, x, y: [[x, r, c, y]],
        "one batch, award first": lambda c, r, x, y: [[c, x, r, y]],
    }
    for name, order in orders.items():
        task_id = f"t-{uuid.uuid4().hex[:8]}"
        bid = uuid.uuid4()
        won = answer(task_id, "a", "Paris", bid)
        intruder, again = answer(task_id, "b", "x", uuid.uuid4()), answer(task_id, "a", "y", bid)
        await store_log(fresh_database, *order(close(task_id, "a", bid), won, intruder, again))
        conn = await asyncpg.connect(fresh_database)
        try:
            spent = await conn.fetch("SELECT event_id, cost FROM spend WHERE task_id=$1", task_id)
            kept = await conn.fetch("SELECT event_id FROM results WHERE task_id=$1", task_id)
        finally:
            await conn.close()
        assert [(r["event_id"], r["cost"]) for r in spent] == [(won.event_id, PAID.cost)], name
        assert [r["event_id"] for r in kept] == [won.event_id], name


def replay_verify(database: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`sale replay --verify` on `database`, as a user would run it (without a keyring: the
    logs below are stored unsigned; the market's rules are what is checked)."""
    config = tmp_path / "sale.toml"
    config.write_text(f'[database]\nurl = "{database}"\n')
    env = {**os.environ, "DATABASE_URL": database}
    env.pop("SALE_KEY_DIR", None)
    env.pop("SALE_KEYRING", None)
    command = [sys.executable, "-m", "marketplace.app.cli", "--config", str(config)]
    return subprocess.run(
        [*command, "replay", "--verify"], env=env, capture_output=True, text=True, timeout=120
    )


def played(task_id: str) -> tuple[list[Event], TaskResult, str]:
    """A paper auction played by the real state machine (refined: every phase runs) and
    delivered, not yet graded: its events, the awarded result, and the agent that lost."""
    events = [e for e in refined_auction(task_id) if not isinstance(e, TaskOutcome)]
    [won] = [e for e in events if isinstance(e, TaskResult)]
    return events, won, next(a for a in ("small", "large") if a != won.agent_id)


def graded(result: TaskResult, passed: bool = True) -> TaskOutcome:
    return TaskOutcome(
        producer="verifier",
        task_id=result.task_id,
        passed=passed,
        score=1.0 if passed else 0.0,
        result_event_id=result.event_id,
    )


async def test_replay_verify_names_an_outcome_graded_on_a_non_winners_result(
    fresh_database: str, tmp_path: Path
) -> None:
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    events, won, loser = played(task_id)
    intruder = answer(task_id, loser, "print('mine')", uuid.uuid4())
    wrong = graded(intruder)
    await store_log(fresh_database, [intruder, *events, wrong], signed=False)
    done = replay_verify(fresh_database, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    named = f"TaskOutcome {wrong.event_id}: recorded graded TaskResult {intruder.event_id}"
    assert named in done.stdout
    assert f"recomputed the award's result, {won.event_id}" in done.stdout


async def test_replay_verify_names_a_second_delivery_and_passes_the_honest_log(
    fresh_database: str, tmp_path: Path
) -> None:
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    events, won, _ = played(task_id)
    await store_log(fresh_database, [*events, graded(won)], signed=False)
    clean = replay_verify(fresh_database, tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    again = won.model_copy(update={"event_id": uuid.uuid4()})
    await store_log(fresh_database, [again], signed=False)
    done = replay_verify(fresh_database, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    named = f"TaskResult {again.event_id}: recorded a second result of the winner {won.agent_id}"
    assert named in done.stdout
    assert str(won.event_id) in done.stdout and "every decision verified" not in done.stdout


async def test_checks_of_another_kind_than_the_posted_task_are_refused_at_the_verifier(
    broker_config: BrokerConfig,
    keyring: Path,  # noqa: F811
) -> None:
    """Issue 24: a coding task whose checks were of kind `general` was accepted and its outcome
    "answered", never graded. A client that goes around `misfit` (a raw publish, a dishonest
    client) meets the verifier, which reads the posted task's kind."""
    from tests.integration.test_signing import graded_task

    checks, award, result = graded_task("a", "anything")
    general = checks.model_copy(update={"checks": GeneralChecks()})
    posted = TaskPosted(
        producer="client",
        task_id=checks.task_id,
        kind="coding",
        prompt="def f(): ...",
        inputs=CodingInputs(entry_point="f", examples=["assert f() is None"]),
    )
    watch = Inbox()
    watcher = Bus(broker_config, producer="watcher")
    watcher.subscribe(["outcomes"], "watch-kinds", watch)
    async with (
        watcher,
        Bus(broker_config, "client") as client,
        Bus(broker_config, "auctioneer") as auctioneer,
        Bus(broker_config, "a") as agent,
        verifying(broker_config),
    ):
        await watcher.joined()
        for bus, event in ((client, general), (client, posted), (auctioneer, award)):
            await bus.publish(event)
        await asyncio.sleep(0.5)
        await agent.publish(result)
        [outcome] = await watch.wait_for(1, 30)
    assert outcome.passed is False and not outcome.answered
    assert "checks refused: general checks for a coding task" in outcome.details
