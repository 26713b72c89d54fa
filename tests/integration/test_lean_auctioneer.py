"""Lean auctions through the real broker and the real Postgres, with scripted agents.

The auctioneer runs the lean mechanism; scripted agents draft when called. The priors make small
the first agent asked and large the reserve (value 1): r_small = 0.9 − 0.01 / 0.5 = 0.88,
r_large = 0.95 − 0.2 / 0.8 = 0.70, so small's passing draft (worth 0.9) is awarded and its
failing one (worth 0) escalates to large. The recorder keeps the log; replay verifies it, and
the memory turns the first auctions' drafts into the next auction's estimates.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace.log import replay
from marketplace.log.memory import PostgresMemory
from marketplace.log.replay.readers import read_postgres
from marketplace.shared.config import BrokerConfig, Config, LeanConfig, PriorConfig
from marketplace.shared.database import create_database, drop_database
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidRequested,
    BidSubmitted,
    CodingInputs,
    Event,
    SubmissionRejected,
    TaskOutcome,
    TaskPosted,
    TaskResult,
)
from schemas.topics import Topics
from tests.integration.test_auctioneer import Market, make_config
from tests.integration.test_recorder import recording, wait_for_lag_zero
from tests.unit.test_memory import bag_of_words_test_embedder

pytestmark = pytest.mark.integration

PRIORS = {
    "small": PriorConfig(examples_pass=0.5, right_if_pass=0.9, right_if_fail=0.0, cost=0.01),
    "large": PriorConfig(examples_pass=0.8, right_if_pass=0.95, right_if_fail=0.1, cost=0.2),
}


def lean_config(broker: BrokerConfig) -> Config:
    # Long windows: a call ends as soon as its draft comes; only a broken run waits them out.
    lean = LeanConfig(value=1.0, priors=PRIORS, feedback=True)  # the escalation path too
    return make_config(broker, window_s=20.0, mechanism="lean", lean=lean)


def coding_task(task_id: str, prompt: str) -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt=prompt,
        inputs=CodingInputs(entry_point="f", examples=["assert f(1) == 2"]),
    )


@pytest.fixture
async def database(database_server: str) -> AsyncIterator[str]:
    url = await create_database(database_server, prefix="sale_lean")
    yield url
    await drop_database(database_server, url)


async def settled(m: Market, posted: TaskPosted) -> tuple[AuctionClosed, TaskResult]:
    closed = await m.closed(posted.task_id)
    await m.watch.wait_until(lambda es: m.about(posted.task_id, TaskResult) != [])
    [result] = m.about(posted.task_id, TaskResult)
    return closed, result


async def test_a_passing_cheap_draft_is_awarded_and_a_failing_one_escalates(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    async with Market(lean_config(broker_config)) as m:
        cheap = ScriptedAgent("small", price=0.05, mechanism="lean")
        await m.agent(cheap)
        await m.agent(ScriptedAgent("large", price=0.36, mechanism="lean"))
        await m.auctioneer()

        easy = coding_task("lean-easy", "Add two numbers.")
        await m.post(easy)
        closed, result = await settled(m, easy)
        [opened] = m.about(easy.task_id, AuctionOpened)
        assert opened.mechanism == "lean" and opened.agents == ["large", "small"]
        assert [c.agent_id for c in m.about(easy.task_id, BidRequested)] == ["small"]
        [draft] = m.about(easy.task_id, BidSubmitted)
        assert (closed.reason, closed.winner_agent_id, closed.winner_bid_id) == (
            "awarded",
            "small",
            draft.bid_id,
        )
        assert closed.winning_plan == draft.plan == result.output
        assert result.cost == 0 and result.usage.requests == 0 and result.error is None

        cheap.draft_passes = False  # the same agent, now failing the visible examples
        hard = coding_task("lean-hard", "Parse a date in any format.")
        await m.post(hard)
        closed, result = await settled(m, hard)
        first, second = m.about(hard.task_id, BidRequested)
        assert (first.agent_id, second.agent_id) == ("small", "large")
        small_draft, large_draft = m.about(hard.task_id, BidSubmitted)
        assert second.feedback.agent_id == "small" and second.feedback.source == small_draft.plan
        assert "fixing small's" in large_draft.plan
        assert closed.winner_agent_id == "large" and result.output == large_draft.plan
        assert closed.lean.why == "no agent left to ask can beat large's draft (0.95)"
        assert m.watch.of(SubmissionRejected) == []


async def read_log(database: str) -> list[Event]:
    log = await read_postgres(database)
    assert log.unreadable == []
    return log.events


async def in_log(database: str, query: str, *args: object) -> bool:
    conn = await asyncpg.connect(database)
    try:
        return bool(await conn.fetchval(query, *args))
    finally:
        await conn.close()


async def wait_in_log(database: str, query: str, *args: object) -> None:
    async with asyncio.timeout(30):
        while not await in_log(database, query, *args):
            await asyncio.sleep(0.1)


OUTCOME_RECORDED = "SELECT count(*) FROM outcomes WHERE task_id = $1"


async def test_recorded_lean_auctions_verify_feed_the_memory_and_tampering_is_named(
    broker_config: BrokerConfig, topics: Topics, database: str, tmp_path: Path
) -> None:
    memory = PostgresMemory(database, embedder=bag_of_words_test_embedder, use_pgvector=False)
    config = lean_config(broker_config)
    async with recording(broker_config, database) as recorder, Market(config) as m:
        cheap = ScriptedAgent("small", price=0.05, mechanism="lean")
        await m.agent(cheap)
        await m.agent(ScriptedAgent("large", price=0.36, mechanism="lean"))
        await m.auctioneer(memory=memory)
        first = coding_task("sort-1", "Sort a list of integers in ascending order.")
        await m.post(first)
        await settled(m, first)
        await m.client.publish(
            TaskOutcome(producer="verifier", task_id=first.task_id, passed=True, score=1.0)
        )
        await wait_in_log(database, OUTCOME_RECORDED, first.task_id)

        cheap.draft_passes = False
        second = coding_task("sort-2", "Sort a list of numbers in ascending order.")
        await m.post(second)
        await settled(m, second)
        await wait_for_lag_zero(broker_config, topics, lambda: not recorder.done())
    await memory.close()

    [call] = [c for c in m.about(second.task_id, BidRequested) if c.call == 1]
    small = next(e for e in call.estimates if e.agent_id == "small")
    # One passing, right draft of small on a similar task, shrunk with 4 prior drafts.
    assert small.examples_pass == pytest.approx((4 * 0.5 + 1) / 5)
    assert small.right_if_pass == pytest.approx((4 * 0.9 + 1) / 5)

    events = await read_log(database)
    assert sum(isinstance(e, AuctionClosed) for e in events) == 2
    assert replay.verify(events) == []

    for source, origin in (([], "postgres"), (["--from-kafka"], "kafka")):
        verified = sale(broker_config, database, tmp_path, "replay", "--verify", *source)
        assert f"replayed 2 closed auctions from {origin}: every decision verified" in verified
    story = sale(broker_config, database, tmp_path, "audit", second.task_id)
    assert "  2. ask large: large may beat the draft in hand" in story
    assert "stopped: no agent left to ask can beat large's draft (0.95)" in story

    found = replay.verify(tampered(events, second.task_id))
    named = {(d.task_id, d.field) for d in found}
    assert (second.task_id, "drafts[small].examples_pass") in named  # the draft's verdict
    assert (second.task_id, "lean.estimates[large].reservation") in named  # an estimate
    assert {d.task_id for d in found} == {second.task_id}


def tampered(events: list[Event], task_id: str) -> list[Event]:
    """A copy of the log with small's draft said to pass and large's estimate at the close
    changed, as rows edited in Postgres would read back."""
    out = []
    for event in events:
        if getattr(event, "task_id", None) == task_id:
            payload = json.loads(event.model_dump_json())
            if isinstance(event, BidSubmitted) and event.agent_id == "small":
                payload.update(examples_pass=True, failure=None)
            if isinstance(event, AuctionClosed):
                for estimate in payload["lean"]["estimates"]:
                    if estimate["agent_id"] == "large":
                        estimate["examples_pass"] = 0.3
            event = type(event).model_validate_json(json.dumps(payload))
        out.append(event)
    return out


def sale(broker: BrokerConfig, database: str, tmp_path: Path, *args: str) -> str:
    """`sale ARGS` as a user runs it against this test's log; its output, once it succeeded."""
    config = tmp_path / "sale.toml"
    config.write_text(f'[broker]\ntopic_prefix = "{broker.topic_prefix}"\n')
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap, "DATABASE_URL": database}
    command = [sys.executable, "-m", "marketplace.app.cli", "--config", str(config), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
