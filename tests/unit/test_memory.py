"""The auction memory's pure parts: ranking by similarity, the own-plan rule, cold start, k.

No database and no model here: `bag_of_words_test_embedder` is a test double for the
embedding function (deterministic, so the ranking is known in advance). The real
all-MiniLM-L6-v2 model and the real Postgres are exercised in tests/integration/test_memory.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from marketplace.core import lean_policy
from marketplace.core.retrieval import PastBid, PastTask, cosine, pair, past_drafts, rank, select
from marketplace.log.memory import NoMemory
from schemas.events import CodingInputs, TaskPosted

DIMS = 64


def bag_of_words_test_embedder(texts: Sequence[str]) -> np.ndarray:
    """Test double for `marketplace.shared.embeddings.embed`: hashed bag of words, unit length."""
    out = np.zeros((len(texts), DIMS))
    for i, text in enumerate(texts):
        for word in text.lower().split():
            bucket = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % DIMS
            out[i, bucket] += 1.0
        norm = np.linalg.norm(out[i])
        if norm:
            out[i] /= norm
    return out


PROMPTS = {
    "t-reverse": "reverse a string in python",
    "t-sort": "sort a list of numbers ascending",
    "t-capital": "what is the capital city of france",
    "t-prime": "check whether a number is prime",
}


def past(task_id: str, winner: str, bids: list[PastBid], passed: bool | None = None) -> PastTask:
    winning = next(b.plan for b in bids if b.agent_id == winner)
    return PastTask(task_id, PROMPTS[task_id], winner, winning, passed, tuple(bids))


TASKS = {
    "t-reverse": past(
        "t-reverse",
        "large",
        [PastBid("large", "slice [::-1]", -3.0), PastBid("small", "loop backwards", -1.0)],
        passed=True,
    ),
    "t-sort": past(
        "t-sort",
        "small",
        [
            PastBid("small", "call sorted()", -2.0),
            PastBid("large", "write quicksort", -1.5),
            PastBid("medium", "bubble sort", -0.5),
        ],
        passed=False,
    ),
    "t-capital": past(
        "t-capital",
        "large",
        [PastBid("large", "search wiki for France", -4.0), PastBid("medium", "guess", 1.0)],
    ),
    "t-prime": past(
        "t-prime",
        "medium",
        [PastBid("medium", "trial division", -2.0), PastBid("small", "sieve", -1.0)],
    ),
}


def ranked_for(prompt: str, exclude: str | None = None) -> list[tuple[str, float]]:
    ids = list(PROMPTS)
    vectors = bag_of_words_test_embedder([PROMPTS[i] for i in ids])
    query = bag_of_words_test_embedder([prompt])[0]
    return rank(query, zip(ids, vectors, strict=True), exclude=exclude)


def test_cosine_matches_definition_and_handles_zero_rows() -> None:
    q = np.array([1.0, 0.0])
    sims = cosine(q, np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [0.0, 0.0]]))
    assert sims.tolist() == pytest.approx([1.0, 0.0, -1.0, 0.0])
    assert cosine(q, np.zeros((0, 2))).shape == (0,)


def test_similar_tasks_rank_first() -> None:
    ranked = ranked_for("reverse the string please")
    assert ranked[0][0] == "t-reverse"
    sims = [s for _, s in ranked]
    assert sims == sorted(sims, reverse=True)
    assert ranked_for("is this number prime")[0][0] == "t-prime"


def test_rank_excludes_the_current_task_and_breaks_ties_by_id() -> None:
    assert "t-reverse" not in dict(ranked_for(PROMPTS["t-reverse"], exclude="t-reverse"))
    same = np.array([1.0, 0.0])
    assert [t for t, _ in rank(same, [("b", same), ("a", same)])] == ["a", "b"]


def test_pair_when_the_agent_lost_uses_its_own_plan_against_the_winner() -> None:
    example = pair(TASKS["t-reverse"], "small", 0.9)
    assert example is not None
    assert (example.losing_agent, example.losing_plan) == ("small", "loop backwards")
    assert (example.winning_agent, example.winning_plan) == ("large", "slice [::-1]")
    assert example.passed is True
    assert example.similarity == 0.9


def test_pair_when_the_agent_won_uses_the_best_scored_plan_of_another_agent() -> None:
    example = pair(TASKS["t-sort"], "small", 0.5)
    assert example is not None
    assert (example.winning_agent, example.winning_plan) == ("small", "call sorted()")
    assert (example.losing_agent, example.losing_plan) == ("large", "write quicksort")
    assert example.passed is False


def test_pair_prefers_the_agents_best_scored_bid_and_skips_tasks_it_did_not_bid_on() -> None:
    task = PastTask(
        "t",
        "p",
        "large",
        "win",
        None,
        (
            PastBid("large", "win", -5.0, round=0),
            PastBid("small", "first try", -1.0, round=0),
            PastBid("small", "refined", -2.0, round=1),
            PastBid("medium", "unscored", None),
        ),
    )
    example = pair(task, "small", 0.1)
    assert example is not None and example.losing_plan == "refined"
    assert example.passed is None
    assert pair(task, "nobody", 0.1) is None
    alone = PastTask("t", "p", "large", "win", None, (PastBid("large", "win", -1.0),))
    assert pair(alone, "large", 0.1) is None  # won unopposed: no losing plan to contrast


def test_every_example_has_a_plan_of_the_agents_own() -> None:
    for agent in ("small", "medium", "large", "nobody"):
        for example in select(ranked_for("sort numbers"), TASKS, agent, k=8):
            assert agent in (example.losing_agent, example.winning_agent)
            assert example.losing_agent != example.winning_agent


def test_select_respects_k_and_returns_fewer_while_memory_is_small() -> None:
    ranked = ranked_for("sort a list")
    assert len(select(ranked, TASKS, "small", k=2)) == 2
    everything = select(ranked, TASKS, "small", k=8)
    assert len(everything) == 3  # small bid on three of the four tasks
    assert everything[0].task_id == "t-sort"
    assert select(ranked, TASKS, "small", k=0) == []


def test_cold_start_gives_no_examples() -> None:
    query = bag_of_words_test_embedder(["anything"])[0]
    assert rank(query, []) == []
    assert select([], {}, "small", k=8) == []


async def test_no_memory_gives_no_examples() -> None:
    task = TaskPosted(
        producer="client",
        task_id="t-new",
        kind="coding",
        prompt="def f(x): ...",
        inputs=CodingInputs(entry_point="f", examples=["assert f(1) == 2"]),
    )
    assert await NoMemory().examples(task, "small", 8) == []


async def test_no_memory_has_no_drafts() -> None:
    task = TaskPosted(
        producer="client",
        task_id="t-new",
        kind="coding",
        prompt="def f(x): ...",
        inputs=CodingInputs(entry_point="f"),
    )
    assert await NoMemory().records(task, ["small", "large"]) == []


def test_draft_rows_become_records_with_their_tasks_similarity() -> None:
    rows = [
        {
            "task_id": "t-sort",
            "agent_id": "small",
            "examples_pass": True,
            "right_": True,
            "cost": 0.01,
        },
        {
            "task_id": "t-sort",
            "agent_id": "large",
            "examples_pass": False,
            "right_": None,
            "cost": 0.2,
        },
        {
            "task_id": "t-open",
            "agent_id": "small",
            "examples_pass": True,
            "right_": None,
            "cost": 0.01,
        },  # its auction is still open: no embedding, no similarity
    ]
    query = bag_of_words_test_embedder(["sort a list of integers"])[0]
    vectors = bag_of_words_test_embedder([PROMPTS["t-sort"]])
    similar = dict(rank(query, [("t-sort", vectors[0])]))
    records = past_drafts(rows, similar)
    assert records == [
        lean_policy.Record("small", similar["t-sort"], True, True, 0.01),
        lean_policy.Record("large", similar["t-sort"], False, None, 0.2),
    ]
    assert 0 < similar["t-sort"] < 1
