"""The search benchmark's matrix on the real Postgres: every agent's tool loop (the scripted
backend, tests only, driving it; the real search tool over the small corpus shipped with the
tests) on every search task, graded by the verifier (exact match, token F1), stored under the
search matrix's own name, and the comparison table replayed from it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from agents.agent import LLMAgent
from agents.backends.scripted import ScriptedLLM
from agents.cache import CachedLLM
from agents.llm import Message
from agents.searching import Corpora
from marketplace.evaluation import matrix, table
from marketplace.shared.config import Config
from marketplace.shared.migrate import apply_migrations
from marketplace.shared.posting import Posting
from schemas.events import SearchChecks, SearchInputs, TaskChecks, TaskPosted
from tests.unit.test_search_tool import CORPUS

pytestmark = pytest.mark.integration

# question → its gold answer; the small agent knows only the tea questions' answers
QUESTIONS = {
    "search-engine": ("Who designed the Analytical Engine?", "Charles Babbage"),
    "search-tea": ("In which country did tea originate?", "China"),
    "search-pharos": ("On which island stood the Lighthouse of Alexandria?", "Pharos"),
    "search-tea-dynasty": ("Under which dynasty did tea become a recreational drink?", "Tang"),
}
TRAIN, TEST = ("search-engine", "search-tea"), ("search-pharos", "search-tea-dynasty")
SMALL_KNOWS = {"search-tea", "search-tea-dynasty"}


def posting(task_id: str) -> Posting:
    question, answer = QUESTIONS[task_id]
    task = TaskPosted(
        producer="client",
        task_id=task_id,
        kind="search",
        prompt=question,
        inputs=SearchInputs(corpus="tiny"),
    )
    checks = TaskChecks(producer="client", task_id=task_id, checks=SearchChecks(answers=[answer]))
    return Posting(task, checks)


def searcher(knows: set[str] | None):
    """A scripted tool loop: one search, then the gold answer to the questions it knows (all
    if None), a wrong one to the others."""

    def reply(messages: Sequence[Message]) -> str:
        task_id = next(t for t, (q, _) in QUESTIONS.items() if q in messages[1]["content"])
        if messages[-1]["role"] == "assistant":  # the search begun for it: the question
            return QUESTIONS[task_id][0]
        right = knows is None or task_id in knows
        return f"answer: {QUESTIONS[task_id][1] if right else 'Ada Lovelace'}"

    return reply


def scripted_config(url: str) -> Config:
    agents = [
        {
            "id": agent,
            "backend": "scripted",
            "model": f"scripted-{agent}",
            "input_price": p,
            "output_price": p,
            "kinds": ["search"],
        }
        for agent, p in (("small", 1.0), ("large", 4.0))
    ]
    lean = {
        "value": 10.0,
        "priors": {
            a: {"examples_pass": 0.9, "right_if_pass": 0.8, "right_if_fail": 0.1, "cost": c}
            for a, c in (("small", 0.0001), ("large", 0.0004))
        },
    }
    return Config.model_validate(
        {
            "database": {"url": url},
            "agents": agents,
            "corpora": {"tiny": str(CORPUS)},
            "auction": {"mechanism": "lean", "lean": lean},
        }
    )


async def fill(config: Config, postings: list[Posting]) -> str:
    """One worker fills the search matrix of `postings` (drafts, bids, reviews), its agents
    the scripted tool loops over the tiny corpus; returns the matrix's name."""
    plan = matrix.Plan(
        postings=tuple(postings),
        agents=tuple(a.id for a in config.agents),
        plan_tasks=frozenset(p.task.task_id for p in postings),
    )
    name = matrix.name_of(config.agents, postings)
    conn = await asyncpg.connect(config.database.url)
    try:
        await apply_migrations(conn)
        worker = matrix.Worker(config, name, plan, conn)
        tools = Corpora(config.corpora)
        for settings in config.agents:
            scripted = ScriptedLLM(
                settings.model, searcher(None if settings.id == "large" else SMALL_KNOWS)
            )
            llm = CachedLLM(scripted, config.database.url)
            worker.agents[settings.id] = LLMAgent(settings, llm, tools=tools)
        try:
            await worker.run()
        finally:
            await worker.close()
    finally:
        await conn.close()
    return name


async def load(config: Config, name: str, task_ids: Sequence[str]) -> matrix.Matrix:
    conn = await asyncpg.connect(config.database.url)
    try:
        agents = [a.id for a in config.agents]
        return await matrix.load_matrix(conn, name, [posting(t) for t in task_ids], agents)
    finally:
        await conn.close()


async def test_the_search_matrix_grades_each_loop_and_compares_the_methods(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALE_CORPUS_DIR", str(tmp_path / "corpus"))  # the index is built there
    config = scripted_config(fresh_database)
    postings = [posting(t) for t in (*TRAIN, *TEST)]
    name = await fill(config, postings)
    assert name == matrix.fingerprint(config.agents, "search") != matrix.fingerprint(config.agents)

    train, test = await load(config, name, TRAIN), await load(config, name, TEST)
    assert test.kind == "search" and test.complete_tasks(plans=True) == TEST
    assert test.unchecked == frozenset(TEST)  # a search task prints no example
    cell = test.cell("search-pharos", "large")
    assert cell.result.output == "Pharos" and (cell.passed, cell.outcome.score) == (True, 1.0)
    assert [s.action for s in cell.result.steps] == ["search", "answer"]
    assert cell.result.steps[0].titles  # the real index found something
    wrong = test.cell("search-pharos", "small")
    assert (wrong.passed, wrong.outcome.score, wrong.self_check) == (False, 0.0, True)

    prices = {a.id: a.price for a in config.agents}
    vectors = {t: np.eye(4)[i] for i, t in enumerate((*TRAIN, *TEST))}
    methods = table.matrix_methods(
        train, test, config.auction.weights, prices, vectors, config.auction.lean
    )
    rows = {r.result.method: r for r in table.rows(methods, prices, "large")}
    small, large = rows["always small"], rows["always large"]
    assert (small.result.pass_at_1, small.mean_score) == (0.5, 0.5)
    assert (large.result.pass_at_1, large.mean_score) == (1.0, 1.0)
    # The oracle gives the tea question to small, the island to large: all right, cheaper.
    oracle = rows["oracle"]
    assert oracle.result.pass_at_1 == 1.0 and oracle.result.executors == {"small": 1, "large": 1}
    assert oracle.paired.cost_ratio.estimate < 1
    # The cascade's only check is that there is an answer: it keeps small's every time.
    assert rows["cascade (FrugalGPT-style)"].result.executors == {"small": 2}
    # Lean: nothing to check an answer against, so the reserve (large) alone is asked.
    lean = rows["SALE-lean"]
    assert lean.result.executors == {"large": 2} and lean.result.auction_share == 0.0
    assert lean.result.pass_at_1 == 1.0 and lean.paired.cost_ratio.estimate == 1.0
    paper = rows["SALE-paper round 0"]
    assert paper.result.auction_share > 0  # every plan and review is paid for
    text = table.markdown(list(rows.values()), scored=True)
    assert "| pass@1 | mean F1 |" in text
    assert "| always small | 1 | 50.0% | 0.500 |" in text
