"""`sale weights fit`: the scoring weights, fitted on a training split of the matrix.

The paper fitted its weights once, offline, with a min–max mixed-integer program whose exact
constraints it does not give. Ours, stated so it can be checked: choose the weights that make
the round-0 auction's winners best on the training tasks by

    utility = pass@1 − λ · (execution cost of the winners / execution cost of always-largest)

that is, a point of pass@1 is worth λ/100 of the largest agent's bill (λ = 0.1 by default: doing
everything with the largest agent costs ten points). The search is over every weight at once,
each allowed either sign (a pilot found lower plan entropy, not higher, went with passing):
`samples` random directions on the unit sphere of normalised terms, then a shrinking local
search around the best. Terms are normalised by their spread on the training bids so the
weights are comparable; the written weights are converted back to the raw terms the auctioneer
computes. Deterministic for a given seed. Ties go to the smaller weight vector's order of
discovery, which is fixed by the seed.

Fit on MBPP problems 0–99 (`--tasks mbpp:0:100`); never on the evaluation split, nor on MBPP
problems 200 and above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marketplace.matrix import Matrix
from marketplace.metrics import Prices
from marketplace.routers import juror_score
from marketplace.scoring import filled_jury
from schemas.events import Weights

DEFAULT_LAMBDA = 0.1


@dataclass(frozen=True)
class Terms:
    """The round-0 terms of every bid on every complete task, as arrays [task, agent, ...]."""

    agents: tuple[str, ...]
    cost: np.ndarray  # price · plan tokens
    entropy: np.ndarray
    jury: np.ndarray  # [task, agent, juror]: juror scores, missing ones filled as scoring does
    passed: np.ndarray  # bool
    execution_cost: np.ndarray  # what the agent's execution of its plan cost, at its price


def terms(matrix: Matrix, prices: Prices) -> Terms:
    tasks = matrix.complete_tasks()
    agents = matrix.agents
    shape = (len(tasks), len(agents))
    cost, entropy, passed, execution = (np.zeros(shape) for _ in range(4))
    jury = np.zeros((*shape, len(agents)))
    for t, task_id in enumerate(tasks):
        reviews = {j: matrix.cell(task_id, j).review for j in agents}
        for a, agent_id in enumerate(agents):
            cell = matrix.cell(task_id, agent_id)
            cost[t, a] = prices[agent_id] * cell.bid.plan_tokens
            entropy[t, a] = cell.bid.entropy
            passed[t, a] = cell.passed
            execution[t, a] = prices[agent_id] * cell.result.usage.total_tokens / 1e6
            scores = {j: juror_score(r, cell.bid.bid_id) for j, r in reviews.items()}
            filled = filled_jury(scores)
            jury[t, a] = [filled[j] for j in agents]
    return Terms(agents, cost, entropy, jury, passed.astype(bool), execution)


def features(data: Terms) -> tuple[np.ndarray, np.ndarray]:
    """[task, agent, feature] of normalised terms (cost, entropy, each juror), and the scales."""
    raw = np.concatenate([data.cost[..., None], data.entropy[..., None], data.jury], axis=2)
    scale = raw.reshape(-1, raw.shape[2]).std(axis=0)
    scale[scale == 0] = 1.0
    return raw / scale, scale


def winners(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[candidate, task] → winning agent index. score = w_c·cost − Σ w_k·value_k, lowest wins;
    ties go to the earlier agent (agents are ordered cheapest first by the caller)."""
    signs = np.ones(x.shape[2])
    signs[1:] = -1.0
    scores = np.einsum("taf,cf->cta", x, w * signs)
    return scores.argmin(axis=2)


def utility(data: Terms, chosen: np.ndarray, lam: float) -> np.ndarray:
    """[candidate] → pass@1 − λ · execution cost relative to always-largest."""
    tasks = np.arange(chosen.shape[1])
    passed = data.passed[tasks, chosen].mean(axis=1)
    spent = data.execution_cost[tasks, chosen].sum(axis=1)
    largest = data.execution_cost[:, -1].sum() or 1.0
    return passed - lam * spent / largest


def search(
    data: Terms, lam: float = DEFAULT_LAMBDA, samples: int = 20_000, seed: int = 0
) -> tuple[np.ndarray, float]:
    """The best normalised weight vector found, and its training utility."""
    x, _ = features(data)
    rng = np.random.default_rng(seed)
    candidates = rng.normal(size=(samples, x.shape[2]))
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    scores = utility(data, winners(x, candidates), lam)
    best = candidates[scores.argmax()]
    best_score = float(scores.max())
    for step in (0.5, 0.25, 0.1, 0.05):
        local = best + step * rng.normal(size=(samples // 10, x.shape[2]))
        local /= np.linalg.norm(local, axis=1, keepdims=True)
        local_scores = utility(data, winners(x, local), lam)
        if local_scores.max() > best_score:
            best, best_score = local[local_scores.argmax()], float(local_scores.max())
    return best, best_score


def to_weights(normalised: np.ndarray, scale: np.ndarray, agents: Sequence[str]) -> Weights:
    """Weights on the raw terms the auctioneer computes (cost = w_c · price · plan tokens)."""
    raw = normalised / scale
    return Weights(
        cost=float(raw[0]),
        entropy=float(raw[1]),
        jury=0.0,
        jurors={agent: float(w) for agent, w in zip(agents, raw[2:], strict=True)},
    )


def fit(
    matrix: Matrix, prices: Prices, lam: float = DEFAULT_LAMBDA, seed: int = 0
) -> tuple[Weights, float]:
    """Weights for `matrix`'s agents (ordered cheapest first), and their training utility."""
    ordered = tuple(sorted(matrix.agents, key=lambda a: (prices[a], a)))
    data = terms(Matrix(matrix.tasks, ordered, matrix.cells, matrix.prompts), prices)
    best, score = search(data, lam, seed=seed)
    _, scale = features(data)
    return to_weights(best, scale, ordered), score


def weights_toml(weights: Weights, note: str) -> str:
    jurors = "\n".join(f"{agent} = {w!r}" for agent, w in weights.jurors.items())
    return (
        f"# {note}\n[auction.weights]\ncost = {weights.cost!r}\nentropy = {weights.entropy!r}\n"
        f"jury = {weights.jury!r}\n\n[auction.weights.jurors]\n{jurors}\n"
    )
