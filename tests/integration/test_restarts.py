"""Restarts that must lose nothing, through the real broker: an agent restarted between its bid
and its award still knows the task it won."""

from __future__ import annotations

import asyncio

from agents.agent import LLMAgent
from agents.backends.scripted import ScriptedLLM
from agents.runtime import AgentService
from agents.scripted_agent import ScriptedAgent
from marketplace.services.auctioneer import Auctioneer
from marketplace.shared.bus import Bus
from marketplace.shared.config import AgentConfig, BrokerConfig
from schemas.events import AuctionClosed, TaskResult
from tests.integration.test_auctioneer import Market, make_config, task

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
