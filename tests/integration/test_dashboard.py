"""The operator's view on a real log: live auctions with scripted agents through the real
broker, recorded by the real recorder into Postgres, then read back by the front door's
dashboard API, its `/metrics`, and the dashboard page itself in a real (headless) browser.

The log is made once for the module: six search tasks won by the cheap agent (four pass their
hidden check, two do not), a coding task no agent bids on, and a malformed record that the
consumers dead-letter.

`SALE_DASHBOARD_PNG=docs/dashboard.png` makes the browser test also write a screenshot there
(the picture in docs/front-door.md is made so).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx2
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from agents.scripted_agent import ScriptedAgent
from marketplace.services.front_door.app import create_app
from marketplace.services.recorder import Recorder
from marketplace.services.verifier import Verifier
from marketplace.shared.admin import ensure_topics
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig, Config, DatabaseConfig
from marketplace.shared.database import create_database, drop_database
from marketplace.shared.posting import Posting, publish_one
from schemas.events import (
    CodingInputs,
    SearchChecks,
    SearchInputs,
    TaskChecks,
    TaskPosted,
)
from schemas.topics import Topics
from tests.integration.browser import dump_dom, screenshot
from tests.integration.test_auctioneer import Market, make_config
from tests.integration.test_bus import publish_raw

pytestmark = pytest.mark.integration
RECORDED_S = 90.0
RIGHT = "the cheap agent's answer"  # what the cheap agent answers every search task


@dataclass(frozen=True)
class Recorded:
    config: Config  # the broker the auctions ran on, the database they were recorded in
    passed: list[str]
    failed: list[str]
    unbid: str

    @property
    def tasks(self) -> list[str]:
        return [*self.passed, *self.failed, self.unbid]


def search(task_id: str, answer: str) -> Posting:
    task = TaskPosted(
        producer="client",
        task_id=task_id,
        kind="search",
        prompt=f"Who wins {task_id}?",
        inputs=SearchInputs(),
        tenant="acme",
    )
    checks = TaskChecks(producer="client", task_id=task_id, checks=SearchChecks(answers=[answer]))
    return Posting(task, checks)


async def until(query: str, expected: int, url: str) -> None:
    """Waits until `query` counts `expected` rows in the log (or fails saying what it saw)."""
    deadline = time.monotonic() + RECORDED_S
    seen = None
    while time.monotonic() < deadline:
        conn = await asyncpg.connect(url)
        try:
            with contextlib.suppress(asyncpg.UndefinedTableError):
                seen = await conn.fetchval(query)
        finally:
            await conn.close()
        if seen is not None and seen >= expected:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{query!r}: {seen} after {RECORDED_S:.0f}s, wanted {expected}")


@contextlib.asynccontextmanager
async def running(service: Recorder | Verifier) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@pytest.fixture(scope="module")
async def recorded(kafka_bootstrap: str, database_server: str) -> AsyncIterator[Recorded]:
    broker = BrokerConfig(
        bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        partitions=3,
        fetch_max_wait_ms=10,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await ensure_topics(broker)
    url = await create_database(database_server, prefix="sale_door")
    config = make_config(broker).model_copy(update={"database": DatabaseConfig(url=url)})
    run = uuid.uuid4().hex[:6]
    passed = [f"pass-{run}-{n}" for n in range(1, 5)]
    failed = [f"fail-{run}-{n}" for n in range(1, 3)]
    log = Recorded(config, passed=passed, failed=failed, unbid=f"unbid-{run}")
    market = Market(config)
    try:
        async with (
            running(Recorder(config, Bus(broker, "recorder"), url)),
            running(Verifier(config, Bus(broker, "verifier"))),
            market,
        ):
            await market.auctioneer()
            cheap = ScriptedAgent("cheap", price=1.0, kinds=("search",), search_answer=RIGHT)
            await market.agent(cheap)
            await market.agent(ScriptedAgent("dear", price=5.0, kinds=("search",)))
            bus = market.client
            for task_id in [*passed[:2], failed[0], *passed[2:], failed[1]]:
                right = task_id in passed
                await publish_one(bus, search(task_id, RIGHT if right else "nobody says this"))
            unbid = TaskPosted(
                producer="client",
                task_id=log.unbid,
                kind="coding",
                prompt="def add(a, b): ...",
                inputs=CodingInputs(entry_point="add"),
            )
            await bus.publish(unbid)
            await publish_raw(kafka_bootstrap, Topics(broker.topic_prefix).tasks, b"k", b"junk")
            await until("SELECT count(*) FROM outcomes", 6, url)
            await until("SELECT count(*) FROM auctions WHERE closed_at IS NOT NULL", 7, url)
            await until("SELECT count(*) FROM events WHERE type = 'DeadLetter'", 1, url)
        yield log
    finally:
        await drop_database(database_server, url)


@contextlib.asynccontextmanager
async def serving(config: Config) -> AsyncIterator[str]:
    """The front door under uvicorn on a free port of this machine; yields its base URL."""
    app = create_app(None, config, env={})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def api(recorded: Recorded) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(None, recorded.config, env={})
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://door") as client:
        yield client


async def get(api: httpx2.AsyncClient, path: str) -> dict:
    response = await api.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_dashboard_api_tells_the_recorded_auctions(
    api: httpx2.AsyncClient, recorded: Recorded
) -> None:
    overview = await get(api, "/api/overview")
    assert overview["closed"] == 7 and overview["open"] == 0
    assert overview["closed_by_reason"] == {"awarded": 6, "no_bids": 1}
    assert (overview["verified"], overview["passed"], overview["answered"]) == (6, 4, 0)
    assert overview["spend"] > 0
    assert overview["dead_letters"]["count"] >= 1
    assert overview["dead_letters"]["latest"][0]["topic"].endswith("tasks")

    auctions = {a["task_id"]: a for a in (await get(api, "/api/auctions"))["auctions"]}
    assert set(auctions) == set(recorded.tasks)
    assert {auctions[t]["status"] for t in recorded.passed} == {"passed"}
    assert {auctions[t]["status"] for t in recorded.failed} == {"failed"}
    assert auctions[recorded.unbid]["status"] == "no_bids"
    one = auctions[recorded.passed[0]]
    assert (one["winner_agent_id"], one["bids"], one["tenant"]) == ("cheap", 2, "acme")
    assert one["mechanism"] == "paper" and one["cost"] > 0

    agents = {a["agent_id"]: a for a in (await get(api, "/api/agents"))["agents"]}
    assert agents["cheap"]["wins"] == 6
    assert agents["cheap"]["pass_rate"] == pytest.approx(4 / 6)
    assert (agents["dear"]["wins"], agents["dear"]["pass_rate"]) == (0, None)
    assert agents["dear"]["bids"] == 6 and agents["dear"]["cost"] > 0
    assert agents["cheap"]["model"] == "scripted-cheap"

    story = await get(api, f"/api/auctions/{recorded.passed[0]}")
    assert "winner: cheap" in story["story"]
    assert "outcome: passed" in story["story"]
    kinds = [e["type"] for e in story["events"]]
    assert {"TaskPosted", "AuctionClosed", "TaskResult", "TaskOutcome"} <= set(kinds)

    points = (await get(api, "/api/series"))["points"]
    assert {p["task_id"] for p in points} == set(recorded.tasks)
    missing = await api.get("/api/auctions/no-such-task")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_metrics_count_the_recorded_log(api: httpx2.AsyncClient, recorded: Recorded) -> None:
    response = await api.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("sale_log_up", ())] == 1
    assert samples[("sale_auctions_opened_total", ())] == 7
    assert samples[("sale_auctions_closed_total", (("reason", "awarded"),))] == 6
    assert samples[("sale_auctions_closed_total", (("reason", "no_bids"),))] == 1
    assert samples[("sale_award_latency_seconds_count", ())] == 6
    assert samples[("sale_award_latency_seconds_bucket", (("le", "+Inf"),))] == 6
    assert samples[("sale_wins_total", (("agent", "cheap"),))] == 6
    assert samples[("sale_bids_total", (("agent", "dear"),))] == 6
    assert samples[("sale_outcomes_total", (("verdict", "passed"),))] == 4
    assert samples[("sale_outcomes_total", (("verdict", "failed"),))] == 2
    assert samples[("sale_dead_letters_total", ())] >= 1
    assert samples[("sale_spend_total", (("agent", "cheap"), ("part", "execution")))] > 0
    assert samples[("sale_broker_up", ())] == 1
    recorder = recorded.config.broker.topic_prefix + "recorder"
    lags = [labels for name, labels in samples if name == "sale_consumer_lag"]
    assert any(dict(labels)["group"] == recorder for labels in lags)


async def test_the_dashboard_page_shows_them_in_a_real_browser(recorded: Recorded) -> None:
    async with serving(recorded.config) as base:
        page = f"{base}/dashboard#task={recorded.passed[0]}"
        dom = await dump_dom(page)
        if shot := os.environ.get("SALE_DASHBOARD_PNG"):
            await screenshot(page, Path(shot))
    for task_id in recorded.tasks:
        assert f'data-task-id="{task_id}"' in dom
    assert 'data-agent-id="cheap"' in dom and 'data-agent-id="dear"' in dom
    assert 'class="status no_bids"' in dom
    assert "winner: cheap" in dom  # the picked auction's story
    assert 'id="problem" hidden' in dom  # no error banner
    assert "<polyline" in dom  # the pass-rate line was drawn
