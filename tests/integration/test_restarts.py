"""Restarts that must lose nothing, through the real broker: an agent restarted between its bid
and its award still knows the task it won."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from agents.agent import LLMAgent
from agents.backends.scripted import ScriptedLLM
from agents.runtime import AgentService
from agents.scripted_agent import ScriptedAgent
from marketplace.services.auctioneer import Auctioneer
from marketplace.shared.bus import Bus
from marketplace.shared.config import AgentConfig, BrokerConfig
from marketplace.shared.keyfiles import ensure_keys
from schemas.events import AuctionClosed, TaskResult
from tests.integration.test_auctioneer import Market, make_config, task

SALE = [sys.executable, "-m", "marketplace.app.cli"]
LLM_AGENT = AgentConfig(
    id="llm",
    backend="scripted",
    model="scripted",
    input_price=0.01,
    output_price=0.01,
    executor="chat",
)


def llm_service(broker: BrokerConfig) -> AgentService:
    """The real agent (`LLMAgent`) on the scripted backend: it keeps what it read in memory."""
    return AgentService(LLMAgent(LLM_AGENT, ScriptedLLM()), Bus(broker, producer="llm"))


async def test_an_agent_restarted_between_bid_and_award_executes_what_it_won(
    broker_config: BrokerConfig, topics: object
) -> None:
    async with Market(make_config(broker_config, window_s=8.0)) as m:
        await m.agent(ScriptedAgent("mute", price=0.9, bids=False))  # holds bidding open
        first = llm_service(broker_config)
        await first.start()
        await first.bus.joined()
        auctioneer = await m.auctioneer()
        posted = [task() for _ in range(3)]
        for p in posted:
            await m.post(p)
        async with asyncio.timeout(30):  # every bid taken before the agent goes
            while not all(_has_bid(auctioneer, p.task_id) for p in posted):
                await asyncio.sleep(0.05)
        await first.stop()  # offsets committed: the tasks are not delivered again
        await m.agent(LLMAgent(LLM_AGENT, ScriptedLLM()))
        for p in posted:
            assert (await m.closed(p.task_id)).winner_agent_id == "llm"
        await m.watch.wait_until(lambda es: len(m.watch.of(TaskResult)) >= len(posted), 60)
    results = {r.task_id: r for r in m.watch.of(TaskResult)}
    assert set(results) == {p.task_id for p in posted}
    for result in results.values():
        assert result.error != "the task is unknown to this agent", result
        assert result.output, result
    assert all(c.winner_agent_id == "llm" for c in m.watch.of(AuctionClosed))


def _has_bid(auctioneer: Auctioneer, task_id: str) -> bool:
    auction = auctioneer.auctions.get(task_id)
    return auction is not None and bool(auction.bids)


async def test_an_agent_killed_between_bid_and_award_is_replaced_and_delivers_once(
    broker_config: BrokerConfig, topics: object, tmp_path: Path
) -> None:
    """kill -9 of `sale agent` after its bids: no goodbye, no last commit. A new process of the
    same agent wins and delivers each task exactly once, knowing the task."""
    key_dir, keyring = Path(os.environ["SALE_KEY_DIR"]), Path(os.environ["SALE_KEYRING"])
    ensure_keys({"llm": "agent"}, key_dir, keyring)  # the process signs with it
    async with Market(make_config(broker_config, window_s=10.0)) as m:
        await m.agent(ScriptedAgent("mute", price=0.9, bids=False))  # holds bidding open
        victim = start_agent_process(broker_config, tmp_path, "victim")
        auctioneer = await m.auctioneer()
        try:
            async with asyncio.timeout(60):  # the agent is live before the tasks come
                while "llm" not in auctioneer.roster.beats:
                    await asyncio.sleep(0.1)
            posted = [task() for _ in range(3)]
            for p in posted:
                await m.post(p)
            async with asyncio.timeout(60):
                while not all(_has_bid(auctioneer, p.task_id) for p in posted):
                    await asyncio.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
        finally:
            if victim.poll() is None:
                victim.kill()
        survivor = start_agent_process(broker_config, tmp_path, "survivor")
        try:
            for p in posted:
                assert (await m.closed(p.task_id, timeout_s=60)).winner_agent_id == "llm"
            await m.watch.wait_until(lambda _: len(m.watch.of(TaskResult)) >= len(posted), 90)
            await asyncio.sleep(2.0)  # a second result for a task, if one were coming, is out
        finally:
            survivor.send_signal(signal.SIGTERM)
            survivor.wait(timeout=60)
    for p in posted:
        [result] = m.about(p.task_id, TaskResult)
        assert result.error != "the task is unknown to this agent", result
        assert result.output, result


def start_agent_process(broker_config: BrokerConfig, tmp_path: Path, name: str) -> subprocess.Popen:
    """`python -m marketplace.app.cli agent --id llm` on the scripted backend, as a user runs it."""
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n'
        f"partitions = {broker_config.partitions}\nfetch_max_wait_ms = 10\n"
        f"session_timeout_ms = 2000\nheartbeat_interval_ms = 300\n"
        '[auction]\nmechanism = "paper"\n'
        '[[agents]]\nid = "llm"\nbackend = "scripted"\nmodel = "scripted"\n'
        'input_price = 0.01\noutput_price = 0.01\nexecutor = "chat"\n'
    )
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker_config.bootstrap}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketplace.app.cli",
            "--config",
            str(path),
            "agent",
            "--id",
            "llm",
        ],
        env=env,
        stdout=(tmp_path / f"{name}.log").open("w"),
        stderr=subprocess.STDOUT,
    )
