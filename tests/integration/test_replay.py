"""Replay and audit of a recorded run: real auctions on the real broker, recorded in Postgres.

Scripted agents run whole auctions (bids, jury, refinement, execution) through the auctioneer
while the recorder writes the log to a database of the test's own; then `sale replay` and
`sale audit` run as a user would run them, in a process of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace.shared.config import BrokerConfig
from marketplace.shared.database import create_database, drop_database
from schemas.events import AuctionClosed, TaskOutcome, TaskResult
from schemas.topics import Topics
from tests.integration.test_auctioneer import Market, make_config, task
from tests.integration.test_recorder import recording, wait_for_lag_zero

pytestmark = pytest.mark.integration

SCORES = {"large": 4.0, "small:0": 1.0, "small:1": 5.0}


@dataclass(frozen=True)
class Run:
    """A recorded run: where its log is, how to point `sale` at it, and how each task closed."""

    database: str
    config: Path
    env: dict[str, str]
    closed: dict[str, AuctionClosed]  # refined, refined, budget (large ineligible)

    def sale(self, *args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "marketplace.app.cli", "--config", str(self.config), *args]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120)

    def task(self, i: int) -> str:
        return list(self.closed)[i]


@pytest.fixture
async def database(database_server: str) -> AsyncIterator[str]:
    url = await create_database(database_server, prefix="sale_replay")
    yield url
    await drop_database(database_server, url)


@pytest.fixture
async def run(broker_config: BrokerConfig, topics: Topics, database: str, tmp_path: Path) -> Run:
    """Three auctions, their results and outcomes, recorded until the recorder has it all."""
    async with recording(broker_config, database) as recorder:
        closed = await run_auctions(broker_config)
        await wait_for_lag_zero(broker_config, topics, lambda: not recorder.done())
    config = tmp_path / "sale.toml"
    config.write_text(
        f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n'
        f"partitions = {broker_config.partitions}\nfetch_max_wait_ms = 10\n"
    )
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker_config.bootstrap, "DATABASE_URL": database}
    return Run(database, config, env, closed)


async def run_auctions(broker_config: BrokerConfig) -> dict[str, AuctionClosed]:
    # Long windows: every phase closes early once all answers are in, and a loaded CI machine
    # must not turn a refined auction into an awarded one by a late bid.
    async with Market(make_config(broker_config, window_s=20.0)) as market:
        await market.agent(
            ScriptedAgent("small", price=0.05, scores=SCORES, refined_plan_tokens=60)
        )
        await market.agent(ScriptedAgent("large", price=0.36, scores=SCORES))
        await market.auctioneer()
        posted = [task(), task(), task().model_copy(update={"budget": 2e-5})]
        for p in posted:
            await market.post(p)
        closed = {p.task_id: await market.closed(p.task_id) for p in posted}
        await market.watch.wait_until(lambda es: len(market.watch.of(TaskResult)) == len(posted))
        for i, task_id in enumerate(closed):
            passed = i != 1  # the second task failed its checks
            await market.client.publish(
                TaskOutcome(
                    producer="verifier", task_id=task_id, passed=passed, score=float(passed)
                )
            )
    return closed


async def tamper(database: str, task_id: str, change: Callable[[dict], None]) -> None:
    """Edits the task's AuctionClosed row in place, past the append-only trigger."""
    conn = await asyncpg.connect(database)
    try:
        row = await conn.fetchrow(
            "SELECT id, payload FROM events WHERE type = 'AuctionClosed' AND task_id = $1", task_id
        )
        payload = json.loads(row["payload"])
        change(payload)
        async with conn.transaction():
            await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
            await conn.execute(
                "UPDATE events SET payload = $2::jsonb WHERE id = $1",
                row["id"],
                json.dumps(payload),
            )
            await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    finally:
        await conn.close()


def large_round0(payload: dict) -> dict:
    return next(b for b in payload["bids"] if (b["agent_id"], b["round"]) == ("large", 0))


async def test_a_recorded_run_verifies_and_a_tampered_row_is_named(run: Run) -> None:
    assert [c.reason for c in run.closed.values()] == ["refined", "refined", "awarded"]
    for source in ([], ["--from-kafka"]):
        verified = run.sale("replay", "--verify", *source)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        origin = "kafka" if source else "postgres"
        assert (
            f"replayed 3 closed auctions from {origin}: every decision verified" in verified.stdout
        )

    await tamper(run.database, run.task(0), lambda p: p["weights"].update(cost=0.07))
    await tamper(run.database, run.task(1), lambda p: large_round0(p)["jury"].update(small=2.0))
    tampered = run.sale("replay", "--verify")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    lines = tampered.stdout.splitlines()
    assert lines[0] == "replayed 3 closed auctions from postgres: 2 differ"
    assert f"  {run.task(0)}: weights.cost: recorded 0.07, recomputed 0.05" in lines
    assert f"  {run.task(1)}: bids[large:0].jury.small: recorded 2, recomputed 4" in lines
    assert not any(run.task(2) in line for line in lines)

    untouched = run.sale("replay", "--verify", "--from-kafka")  # the topics still hold the truth
    assert untouched.returncode == 0, untouched.stdout + untouched.stderr


async def test_audit_tells_a_task_story_and_weights_replay_counterfactually(
    run: Run, tmp_path: Path
) -> None:
    assert [c.reason for c in run.closed.values()] == ["refined", "refined", "awarded"]
    story = run.sale("audit", run.task(0))
    assert story.returncode == 0, story.stderr
    text = story.stdout
    for kind in ("TaskPosted", "AuctionOpened", "JuryCalled", "RefinementCalled", "AuctionClosed"):
        assert kind in text
    assert "winner: small with bid small:1 (refined)" in text
    costs = {line.split()[0]: line.split() for line in text.splitlines()[-10:] if line.strip()}
    for part in ("bids", "refinement", "jury", "execution"):
        assert float(costs[part][3]) > 0, text
    assert "outcome: passed, score 1" in text

    budgeted = run.sale("audit", run.task(2)).stdout
    assert "large:0 is ineligible: its plan costs more than the budget" in budgeted

    missing = run.sale("audit", "no-such-task")
    assert missing.returncode == 1 and "no events recorded" in missing.stderr

    weights = tmp_path / "weights.toml"
    weights.write_text("cost = 1000.0\nentropy = 0.0\njury = 1.0\n")
    replayed = run.sale("replay", "--weights", str(weights))
    assert replayed.returncode == 0, replayed.stderr
    out = replayed.stdout
    assert "re-scored 3 closed auctions under weights cost=1000 entropy=0 jury=1" in out
    assert "winners changed in 2 of 3 auctions" in out
    assert f"{run.task(0)}  small:1 → small:0" in out
    rate = "pass rate: recorded 2/3 (66.7%), counterfactual 1/1 (100.0%) where known; 2 unknown"
    assert rate in out
