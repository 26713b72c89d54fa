"""A search task through a real lean auction: the real broker, auctioneer, recorder (Postgres)
and verifier; a model agent (the scripted backend driving its tool loop, the real search tool
over the small corpus shipped with the tests) and a scripted agent. The answer is graded
against the gold answers, and the log tells the story: the queries issued, the article read,
the answer, the grade.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.agent import LLMAgent
from agents.backends.scripted import ScriptedLLM, canned
from agents.scripted_agent import ScriptedAgent
from agents.searching import Corpora
from marketplace.shared.config import AgentConfig, BrokerConfig
from marketplace.shared.database import create_database, drop_database
from schemas.events import BidRequested, SearchInputs, TaskOutcome, TaskPosted
from schemas.topics import Topics
from tests.integration.test_auctioneer import Market
from tests.integration.test_lean_auctioneer import (
    OUTCOME_RECORDED,
    lean_config,
    read_log,
    sale,
    settled,
    wait_in_log,
)
from tests.integration.test_recorder import recording, wait_for_lag_zero
from tests.integration.test_verifier import search_checks, verifying
from tests.unit.test_search_tool import CORPUS

pytestmark = pytest.mark.integration

QUESTION = TaskPosted(
    producer="client",
    task_id="search-dune",
    kind="search",
    prompt="Who designed the machine for which Ada Lovelace published the first algorithm?",
    inputs=SearchInputs(corpus="tiny"),
)
LARGE = AgentConfig(
    id="large",
    backend="scripted",
    model="scripted-large",
    input_price=0.12,
    output_price=0.36,
    kinds=["search"],
)
ACTIONS = ["search: Ada Lovelace machine", "open: 2", "answer: Charles Babbage"]


@pytest.fixture
async def database(database_server: str) -> AsyncIterator[str]:
    url = await create_database(database_server, prefix="sale_search")
    yield url
    await drop_database(database_server, url)


async def test_a_search_task_is_answered_with_the_tool_graded_and_its_story_told(
    broker_config: BrokerConfig,
    topics: Topics,
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALE_CORPUS_DIR", str(tmp_path / "corpus"))  # the index is built there
    tools = Corpora({"tiny": CORPUS})
    large = LLMAgent(LARGE, ScriptedLLM(reply=canned(ACTIONS)), mechanism="lean", tools=tools)
    config = lean_config(broker_config)
    async with (
        recording(broker_config, database) as recorder,
        verifying(broker_config),
        Market(config) as m,
    ):
        small = ScriptedAgent("small", price=0.05, mechanism="lean", search_answer="Ada Lovelace")
        await m.agent(small)
        await m.agent(large)
        await m.auctioneer()
        await m.client.publish(search_checks(QUESTION.task_id, ["Charles Babbage", "Babbage"]))
        await m.post(QUESTION)
        closed, result = await settled(m, QUESTION)
        await wait_in_log(database, OUTCOME_RECORDED, QUESTION.task_id)
        await wait_for_lag_zero(broker_config, topics, lambda: not recorder.done())

    # Nothing prints a search task's examples: the reserve (the dearer agent) is asked first.
    [asked] = m.about(QUESTION.task_id, BidRequested)
    assert asked.agent_id == "large" and asked.checkable is False
    assert closed.winner_agent_id == "large" and closed.winning_plan == "Charles Babbage"
    assert result.output == "Charles Babbage" and result.error is None
    assert [(s.action, s.text, s.titles) for s in result.steps] == [
        ("search", "Ada Lovelace machine", ["Ada Lovelace", "Analytical Engine"]),
        ("open", "Analytical Engine", ["Analytical Engine"]),  # "open: 2", the second result
        ("answer", "Charles Babbage", []),
    ]
    assert list(tools.loaded) == ["tiny"]

    events = await read_log(database)
    [outcome] = [e for e in events if isinstance(e, TaskOutcome)]
    assert (outcome.passed, outcome.score) == (True, 1.0)
    [draft] = [e for e in events if getattr(e, "plan", None) == "Charles Babbage"]
    assert draft.usage.requests == 3 and draft.usage.cost > 0  # every call of the loop paid

    story = sale(broker_config, database, tmp_path, "audit", QUESTION.task_id)
    assert "search: large's tool loop\n  1. search 'Ada Lovelace machine' → Ada Lovelace" in story
    assert "  2. read 'Analytical Engine'\n  3. answer 'Charles Babbage'" in story
    assert "draft: an answer" in story
    assert "outcome: passed, score 1: exact match: yes" in story
