"""Retrieval from the auction memory, pure: past auctions and drafts in, examples out.

The paper's refinement (docs/mechanism.md): embed the new task's prompt, rank the past closed
auctions by cosine similarity of their prompts' embeddings, and from each of the most similar
tasks take one (losing plan, winning plan) pair with at least one plan of the refining agent's
own, labelled with the execution outcome when the verifier has decided it. The lean auction's
estimates read past drafts (`lean.Record`) ranked the same way. Similarities are computed in
float64 numpy, so the memory in Postgres and the tests agree to the last digit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marketplace.core import lean_policy
from schemas.events import MemoryExample


@dataclass(frozen=True)
class PastBid:
    agent_id: str
    plan: str
    score: float | None = None  # C − V as the auction counted it; lower is better
    round: int = 0


@dataclass(frozen=True)
class PastTask:
    """A closed auction as the memory needs it."""

    task_id: str
    prompt: str
    winner_agent_id: str
    winning_plan: str
    passed: bool | None = None
    bids: tuple[PastBid, ...] = field(default_factory=tuple)


def cosine(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of `query` with each row of `vectors` (zero rows score 0)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.size == 0:
        return np.zeros(0)
    query = np.asarray(query, dtype=np.float64)
    # Row by row (elementwise product, then a sum along the row), not a matrix product: BLAS
    # rounds differently with the matrix's shape, and both paths must give the same figures
    # whether they score every stored task (numpy) or a candidate subset (pgvector).
    norms = np.sqrt((vectors * vectors).sum(axis=1)) * np.sqrt((query * query).sum())
    dots = (vectors * query).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sims = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 0.0)
    return np.clip(sims, -1.0, 1.0)


def rank(
    query: np.ndarray, candidates: Iterable[tuple[str, np.ndarray]], exclude: str | None = None
) -> list[tuple[str, float]]:
    """(task_id, similarity), most similar first; ties by task_id, so the order is total."""
    items = [(task_id, vector) for task_id, vector in candidates if task_id != exclude]
    if not items:
        return []
    sims = cosine(query, np.vstack([np.asarray(v, dtype=np.float64) for _, v in items]))
    ranked = [(task_id, float(s)) for (task_id, _), s in zip(items, sims, strict=True)]
    return sorted(ranked, key=lambda item: (-item[1], item[0]))


def _best(bids: Iterable[PastBid]) -> PastBid | None:
    """The best-scored bid: lowest score; unscored last; then the later round."""
    ordered = sorted(
        bids,
        key=lambda b: (b.score is None, b.score if b.score is not None else 0.0, -b.round),
    )
    return ordered[0] if ordered else None


def pair(task: PastTask, agent_id: str, similarity: float) -> MemoryExample | None:
    """The (losing plan, winning plan) pair of `task` with at least one plan by `agent_id`.

    The agent won: its winning plan against the best-scored plan of another agent. It lost: its
    own best-scored plan against the winner's. It did not bid, or there is no pair: None.
    """
    with_plan = [b for b in task.bids if b.plan]
    if task.winner_agent_id == agent_id:
        loser = _best(b for b in with_plan if b.agent_id != agent_id)
    else:
        loser = _best(b for b in with_plan if b.agent_id == agent_id)
    if loser is None or not task.winning_plan:
        return None
    return MemoryExample(
        task_id=task.task_id,
        prompt=task.prompt,
        similarity=max(-1.0, min(1.0, similarity)),
        losing_agent=loser.agent_id,
        losing_plan=loser.plan,
        winning_agent=task.winner_agent_id,
        winning_plan=task.winning_plan,
        passed=task.passed,
    )


def select(
    ranked: Sequence[tuple[str, float]], tasks: Mapping[str, PastTask], agent_id: str, k: int
) -> list[MemoryExample]:
    """Walks the ranking and keeps the first k tasks that give `agent_id` a pair."""
    examples: list[MemoryExample] = []
    for task_id, similarity in ranked:
        if len(examples) >= k:
            break
        task = tasks.get(task_id)
        if task is not None and (example := pair(task, agent_id, similarity)) is not None:
            examples.append(example)
    return examples


# --- Postgres --------------------------------------------------------------------------------


def past_drafts(
    rows: Iterable[Mapping[str, Any]], similar: Mapping[str, float]
) -> list[lean_policy.Record]:
    """Draft rows as memory records; a task without an embedding yet (its auction still open, or
    closed without a winner) cannot be compared, so its drafts are left out."""
    return [
        lean_policy.Record(
            agent_id=r["agent_id"],
            similarity=similar[r["task_id"]],
            examples_pass=r["examples_pass"],
            right=r["right_"],
            cost=r["cost"],
        )
        for r in rows
        if r["task_id"] in similar
    ]
