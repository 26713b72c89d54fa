"""End to end through the front door: the official `openai` client → `sale serve` (its own
process, as a user runs it) → the marketplace client → a live auction among scripted agents on
the real broker, recorded in the real Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx2
import openai
import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace.services.recorder import Recorder
from marketplace.services.verifier import Verifier
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig, Config, DatabaseConfig, to_toml
from tests.integration.test_auctioneer import Market, make_config
from tests.integration.test_dashboard import running, until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STARTED_S = 60.0
ASK_S = 60.0  # a request's wait for its task: a failure shows in a minute, not five


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def door_config(broker_config: BrokerConfig, fresh_database: str, topics: object) -> Config:
    config = make_config(broker_config, window_s=5.0)
    serve = config.serve.model_copy(
        update={"port": free_port(), "keys": {"acme": "ACME_KEY"}, "timeout_s": ASK_S}
    )
    return config.model_copy(
        update={"database": DatabaseConfig(url=fresh_database), "serve": serve}
    )


@pytest.fixture
async def sale_serve(door_config: Config, tmp_path: Path) -> AsyncIterator[str]:
    """`sale serve` in its own process; yields its base URL, stops it with SIGTERM. Waits
    without blocking, so the services of this process keep running meanwhile."""
    path = tmp_path / "sale.toml"
    path.write_text(to_toml(door_config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACME_KEY": "sk-acme-test"}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "marketplace.app.cli", "--config", str(path), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{door_config.serve.port}"
    try:
        await _until_up(base, process, log_path)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _until_up(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTED_S
    async with httpx2.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"sale serve exited {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx2.TransportError):
                if (await http.get(f"{base}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"sale serve not up after {STARTED_S:.0f}s:\n{log.read_text()}")


@contextlib.asynccontextmanager
async def live(config: Config, kinds: tuple[str, ...]) -> AsyncIterator[Market]:
    """The auctioneer, two scripted agents taking `kinds` of task, the verifier (it records a
    general task's answer as answered) and the recorder, in this process."""
    url = config.database.url
    recorder = Recorder(config, Bus(config.broker, "recorder"), url)
    verifier = Verifier(config, Bus(config.broker, "verifier"))
    async with running(recorder), running(verifier), Market(config) as market:
        await market.auctioneer()
        await market.agent(ScriptedAgent("cheap", price=1.0, kinds=kinds))
        await market.agent(ScriptedAgent("dear", price=5.0, kinds=kinds))
        yield market


@pytest.fixture
async def market(door_config: Config) -> AsyncIterator[Market]:
    async with live(door_config, ("general",)) as market:
        yield market


@pytest.fixture
async def coders_only(door_config: Config) -> AsyncIterator[Market]:
    """Agents that take coding tasks only: nobody bids on a general request."""
    async with live(door_config, ("coding",)) as market:
        yield market


async def test_the_openai_client_gets_the_auction_s_answer(
    market: Market, sale_serve: str, door_config: Config
) -> None:
    client = openai.AsyncOpenAI(
        base_url=f"{sale_serve}/v1", api_key="sk-acme-test", max_retries=0, timeout=ASK_S + 30
    )
    raw = await client.chat.completions.with_raw_response.create(
        model="sale", messages=[{"role": "user", "content": "Who should answer this?"}]
    )
    completion = raw.parse()
    task_id = raw.headers["x-sale-task-id"]
    assert raw.headers["x-sale-winner"] == "cheap"
    assert float(raw.headers["x-sale-cost"]) > 0
    assert completion.metadata["task_id"] == task_id
    assert completion.model == "sale/paper"
    assert completion.usage.total_tokens > 0

    url = door_config.database.url
    await until(f"SELECT count(*) FROM results WHERE task_id = '{task_id}'", 1, url)
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT tenant, winner_agent_id FROM auctions WHERE task_id = $1", task_id
        )
        delivered = await conn.fetchval("SELECT output FROM results WHERE task_id = $1", task_id)
    finally:
        await conn.close()
    assert (row["tenant"], row["winner_agent_id"]) == ("acme", "cheap")  # the key's tenant
    assert completion.choices[0].message.content == delivered  # the winner's own answer
    assert "cheap" in delivered

    models = await client.models.list()
    assert [m.id for m in models.data] == ["sale", "sale/paper"]
    stranger = openai.AsyncOpenAI(base_url=f"{sale_serve}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await stranger.chat.completions.create(
            model="sale", messages=[{"role": "user", "content": "x"}]
        )


async def test_a_request_nobody_bids_on_is_a_503_naming_its_task(
    coders_only: Market, sale_serve: str
) -> None:
    client = openai.AsyncOpenAI(
        base_url=f"{sale_serve}/v1", api_key="sk-acme-test", max_retries=0, timeout=ASK_S + 30
    )
    with pytest.raises(openai.APIStatusError) as raised:
        await client.chat.completions.create(
            model="sale", messages=[{"role": "user", "content": "Anyone?"}]
        )
    assert raised.value.status_code == 503
    assert raised.value.code == "no_bids"
    task_id = raised.value.response.headers["x-sale-task-id"]
    assert task_id in raised.value.message


def example() -> object:
    """examples/ask_openai.py as a module (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("ask_openai", ROOT / "examples/ask_openai.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_openai_example_s_calls_behave_as_documented(
    market: Market, sale_serve: str
) -> None:
    """examples/ask_openai.py's calls, through the official client (synchronous, as the example
    is: run in a thread so this process's services keep serving): a plain answer with its
    headers, `max_tokens` cutting the winner's answer (`finish_reason` "length"), and `n=2`
    and `tools` refused with a 400 naming the parameter."""
    ask = example()
    client = openai.OpenAI(
        base_url=f"{sale_serve}/v1", api_key="sk-acme-test", max_retries=0, timeout=ASK_S + 30
    )
    text, headers = await asyncio.to_thread(ask.plain, client)
    assert text == "scripted answer of cheap"  # the scripted winner's whole answer
    assert headers["x-sale-winner"] == "cheap" and headers["x-sale-status"] == "answered"
    text, finish = await asyncio.to_thread(ask.capped, client, 2)
    assert (text, finish) == ("scripted answer", "length")  # two words: the scripted tokens
    text, finish = await asyncio.to_thread(ask.capped, client, 100)
    assert (text, finish) == ("scripted answer of cheap", "stop")
    for asked, param in (({"n": 2}, "n"), ({"tools": ask.TOOLS}, "tools")):
        error = await asyncio.to_thread(ask.refused, client, **asked)
        assert (error.status_code, error.code, error.param) == (400, "unsupported_parameter", param)
        assert error.body["type"] == "invalid_request_error"
    script = [
        sys.executable,
        str(ROOT / "examples/ask_openai.py"),
        "--base-url",
        f"{sale_serve}/v1",
    ]
    run = await asyncio.to_thread(
        subprocess.run, [*script, "--api-key", "sk-acme-test"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "max_tokens=3: 'scripted answer of' (finish_reason length)" in run.stdout
    assert "n=2: 400 unsupported_parameter (param n): n=2 is not supported" in run.stdout
    assert "tools=[...]: 400 unsupported_parameter (param tools)" in run.stdout
