"""An agent written without this project's code takes part in real auctions.

examples/foreign_agent/agent.py (plain aiokafka, `cryptography` and json, built from the
published contract in docs/contract/) runs as a process of its own against the real broker, with
the project's auctioneer, verifier and recorder. Its key is registered the way an operator
would: the table it prints is appended to the keyring the services read. It must be believed
(every event it signs by hand passes the services' checks), win, deliver, pass the hidden
checks, and be in the Postgres log; an unsigned copy of its bid must be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from marketplace.shared.config import BrokerConfig, LeanConfig
from marketplace.shared.database import create_database, drop_database
from schemas.codec import encode
from schemas.events import (
    BidSubmitted,
    CodingChecks,
    CodingInputs,
    DeadLetter,
    SubmissionRejected,
    TaskChecks,
    TaskPosted,
    TaskResult,
)
from schemas.topics import Topics
from tests.integration.test_auctioneer import Market, make_config
from tests.integration.test_bus import publish_raw
from tests.integration.test_lean_auctioneer import OUTCOME_RECORDED, wait_in_log
from tests.integration.test_recorder import recording, wait_for_lag_zero
from tests.integration.test_verifier import verifying

pytestmark = pytest.mark.integration

AGENT = Path(__file__).resolve().parents[2] / "examples" / "foreign_agent" / "agent.py"


@pytest.fixture
async def database(database_server: str) -> AsyncIterator[str]:
    url = await create_database(database_server, prefix="sale_foreign")
    yield url
    await drop_database(database_server, url)


async def registered(key: Path, agent_id: str) -> str:
    """Makes the agent's key with the agent itself and appends the table it prints to the
    keyring the services read (the session's); returns the key id."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(AGENT), "--key", str(key), "--agent-id", agent_id, "--keyring-entry",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    entry, _ = await process.communicate()
    assert process.returncode == 0
    with Path(os.environ["SALE_KEYRING"]).open("a") as keyring:
        keyring.write(entry.decode())
    return entry.decode().split('id = "')[1].split('"')[0]


@contextlib.asynccontextmanager
async def foreign_agent(
    broker: BrokerConfig, key: Path, agent_id: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The agent as its own process, once it says it is ready (its heartbeat is out); stopped
    with SIGTERM at the end, after which it must exit cleanly."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(AGENT), "--bootstrap", broker.bootstrap,
        "--prefix", broker.topic_prefix, "--key", str(key), "--agent-id", agent_id,
        "--keyring", os.environ["SALE_KEYRING"],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while "ready" not in (line := (await process.stdout.readline()).decode()):
                assert line, f"the agent exited before it was ready:\n{''.join(seen)}"
                seen.append(line)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, "".join(seen) + output.decode()


def coding_task(task_id: str) -> tuple[TaskPosted, TaskChecks]:
    posted = TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt="Write add(a, b), which returns the sum of two numbers.",
        inputs=CodingInputs(entry_point="add", examples=["assert add(1, 2) == 3"]),
    )
    tests = "assert add(2, 2) == 4\nassert add(-1, 1) == 0\nassert add(0.5, 0.25) == 0.75\n"
    checks = TaskChecks(
        producer="client", task_id=task_id, checks=CodingChecks(entry_point="add", tests=tests)
    )
    return posted, checks


async def rows(database: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


@pytest.mark.parametrize("mechanism", ["lean", "paper"])
async def test_a_foreign_agent_wins_delivers_passes_and_is_in_the_log(
    mechanism: str, broker_config: BrokerConfig, topics: Topics, database: str, tmp_path: Path
) -> None:
    agent_id = f"foreign-{mechanism}"
    key_id = await registered(tmp_path / "foreign.key", agent_id)
    config = make_config(
        broker_config, window_s=30.0, mechanism=mechanism, lean=LeanConfig(value=1.0)
    )
    posted, checks = coding_task(f"foreign-{mechanism}-1")
    async with (
        recording(broker_config, database) as recorder,
        verifying(broker_config),
        Market(config) as m,
    ):
        async with foreign_agent(broker_config, tmp_path / "foreign.key", agent_id):
            await m.auctioneer()  # after the heartbeat: the agent is live for the first task
            await m.client.publish(checks)
            await m.post(posted)
            closed = await m.closed(posted.task_id, timeout_s=90)
            refusals = [d.error for d in m.watch.of(DeadLetter)]  # what went wrong, if it did
            assert (closed.mechanism, closed.reason) == (mechanism, "awarded"), refusals
            assert closed.winner_agent_id == agent_id
            await m.watch.wait_until(lambda _: m.about(posted.task_id, TaskResult) != [], 60)
            [result] = m.about(posted.task_id, TaskResult)
            assert (result.agent_id, result.bid_id) == (agent_id, closed.winner_bid_id)
            assert "return a + b" in result.output
            assert m.about(posted.task_id, SubmissionRejected) == []
            await wait_in_log(database, OUTCOME_RECORDED, posted.task_id)

            # An unsigned copy of its bid, as anyone who can write to the broker could send it,
            # is refused by every consumer that reads bids, and recorded nowhere as a bid.
            [bid] = [b for b in m.about(posted.task_id, BidSubmitted) if b.agent_id == agent_id]
            copy = encode(bid)
            await publish_raw(broker_config.bootstrap, topics.bids, posted.task_id.encode(), copy)
            digest = hashlib.sha256(copy).hexdigest()

            def refused_by_recorder(_: object) -> bool:
                return any(
                    d.raw_sha256 == digest and d.consumer_group.endswith("recorder")
                    for d in m.watch.of(DeadLetter)
                )

            await m.watch.wait_until(refused_by_recorder, 30)
            letters = [d for d in m.watch.of(DeadLetter) if d.raw_sha256 == digest]
            assert {d.error for d in letters} == {"signature: unsigned record"}
        await wait_for_lag_zero(broker_config, topics, lambda: not recorder.done())

    [outcome] = await rows(database, "SELECT passed, details FROM outcomes WHERE task_id = $1",
                           posted.task_id)  # fmt: skip
    assert outcome["passed"], outcome["details"]
    signed = await rows(
        database,
        "SELECT type, key_id FROM events WHERE producer = $1 AND (task_id = $2 OR task_id IS NULL)",
        agent_id,
        posted.task_id,
    )
    types = {r["type"] for r in signed}
    assert {"AgentHeartbeat", "BidSubmitted", "TaskResult"} <= types
    assert {r["key_id"] for r in signed} == {key_id}  # every one vouched for by its own key
    bids = await rows(
        database, "SELECT count(*) AS n FROM events WHERE event_id = $1", bid.event_id
    )
    assert bids[0]["n"] == 1  # the signed bid only, not its unsigned copy
    [won] = await rows(
        database, "SELECT winner_agent_id FROM auctions WHERE task_id = $1", posted.task_id
    )
    assert won["winner_agent_id"] == agent_id
