"""The smallest real model (SmolLM2-135M, tier S) through the whole flow on the real broker:
in-process llama.cpp, and the same model behind llama.cpp's OpenAI-compatible server."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.agent import LLMAgent
from agents.backends import build
from agents.runtime import AgentService
from marketplace.evaluation.datasets import humaneval
from marketplace.shared.bus import Bus
from marketplace.shared.config import AgentConfig, BrokerConfig
from marketplace.shared.local_broker import free_port, wait_for_port
from marketplace.shared.tokens import Tokenizers
from schemas.events import AuctionClosed, BidRequested, BidSubmitted, TaskResult
from tests.integration.test_auctioneer import Market, make_config

SMALL = dict(
    model="smollm2-135m",
    input_price=0.05,
    output_price=0.05,
    max_plan_tokens=64,
    execute_rounds=1,
    execute_max_tokens=200,
    context_tokens=2048,
)


@pytest.fixture(scope="session")
def llama_server(tier_s: str) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            tier_s,
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--n_ctx",
            "2048",
            "--logits_all",
            "True",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=120)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)


async def one_auction(
    broker: BrokerConfig, settings: AgentConfig, mechanism: str = "paper", vocabulary: str = ""
) -> list:
    """One HumanEval task auctioned to one real agent; returns what the agent published. With
    the model's `vocabulary`, the auctioneer recounts the bid's plan tokens (it must pass)."""
    posted, _ = humaneval(0, 1)[0]
    agent = LLMAgent(settings, build(settings), mechanism=mechanism)
    market = Market(make_config(broker, window_s=120.0, mechanism=mechanism))
    async with market:
        service = AgentService(agent, Bus(broker, producer=settings.id))
        async with service:
            await service.bus.joined()
            recount = Tokenizers({settings.model: Path(vocabulary)} if vocabulary else {})
            await market.auctioneer(tokenizers=recount)
            await market.post(posted)
            await market.closed(posted.task_id, timeout_s=300)
            await market.watch.wait_until(
                lambda es: any(isinstance(e, TaskResult) for e in es), timeout_s=300
            )
    return market.watch.events and [e for e, _ in market.watch.events]


def check(events: list) -> None:
    [bid] = [e for e in events if isinstance(e, BidSubmitted)]
    assert bid.plan_tokens > 0 and math.isfinite(bid.entropy) and bid.entropy > 0
    assert bid.usage.prompt_tokens > 0
    [closed] = [e for e in events if isinstance(e, AuctionClosed)]
    assert closed.winner_agent_id == bid.agent_id
    [score] = closed.bids[0].jury.values()
    assert score is not None and 0 <= score <= 5
    [result] = [e for e in events if isinstance(e, TaskResult)]
    assert result.usage.completion_tokens > 0 and result.output
    assert result.cost == pytest.approx(0.05 * result.usage.total_tokens / 1e6)


async def test_tier_s_in_process_bids_judges_and_executes(
    broker_config: BrokerConfig, topics: object, tier_s: str
) -> None:
    settings = AgentConfig(id="s-local", backend="llama_cpp", tier="S", **SMALL)
    check(await one_auction(broker_config, settings, vocabulary=tier_s))


async def test_tier_s_over_http_bids_judges_and_executes(
    broker_config: BrokerConfig, topics: object, llama_server: str
) -> None:
    settings = AgentConfig(id="s-http", backend="openai", endpoint=llama_server, **SMALL)
    check(await one_auction(broker_config, settings))


async def test_tier_s_in_process_drafts_and_its_draft_is_the_result_in_a_lean_auction(
    broker_config: BrokerConfig, topics: object, tier_s: str
) -> None:
    settings = AgentConfig(id="s-lean", backend="llama_cpp", tier="S", **SMALL)
    events = await one_auction(broker_config, settings, mechanism="lean", vocabulary=tier_s)
    [asked] = [e for e in events if isinstance(e, BidRequested)]
    assert asked.agent_id == "s-lean" and asked.why
    [bid] = [e for e in events if isinstance(e, BidSubmitted)]
    assert bid.examples_pass is not None and bid.usage.completion_tokens > 0
    assert bid.usage.cost == pytest.approx(0.05 * bid.usage.total_tokens / 1e6)
    [closed] = [e for e in events if isinstance(e, AuctionClosed)]
    assert closed.mechanism == "lean" and closed.winner_agent_id == "s-lean"
    [result] = [e for e in events if isinstance(e, TaskResult)]
    assert result.output == bid.plan and result.usage.total_tokens == 0  # not paid twice


async def test_tier_s_runs_the_search_tool_loop_on_the_small_shipped_corpus(
    tier_s: str, tmp_path: Path
) -> None:
    """The loop with a real model and the real tool, mechanics only (SmolLM2-135M keeps poorly
    to the format; it may search for "<a few keywords>"): the first action is a search, the
    budget holds, every call is paid for."""
    from agents.searching import Budget, run
    from agents.tools.search import load_tool
    from tests.integration.test_search_auction import QUESTION
    from tests.unit.test_search_tool import CORPUS

    settings = AgentConfig(id="s-search", backend="llama_cpp", tier="S", **SMALL)
    tool = load_tool(CORPUS, cache_dir=tmp_path)
    done = await run(build(settings), tool, QUESTION, "", settings.price, Budget(max_steps=3))
    assert done.steps[0].action == "search"
    assert len(done.steps) <= 3 and done.usage.requests <= 3
    assert done.answer or done.error
    assert done.usage.cost == pytest.approx(0.05 * done.usage.total_tokens / 1e6)
