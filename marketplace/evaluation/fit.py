"""`sale weights fit`: the scoring weights, fitted on a training split of the matrix.

The paper fitted its weights once, offline, with a min–max mixed-integer program whose exact
constraints it does not give. Ours, stated so it can be checked: choose the weights that make
the round-0 auction best on the training tasks by

    utility = pass@1 − λ · (what the auction and the winners cost / what always-largest costs)

where the auction's cost is every bid plus the reviews of the jurors it asks (a juror of weight 0 is
not asked, so dropping a juror saves its reviews), the winners' cost their drafts, and
always-largest pays its own draft (as `marketplace.evaluation.baselines` accounts them).
Every call is
priced per direction (input, cached input, output); the score's cost term stays w_c · output price ·
plan tokens, as the auctioneer computes it. Only tasks where every agent bid and reviewed are fitted
on (`Matrix.complete_tasks(plans=True)`). A point of pass@1 is worth λ/100 of the largest agent's
bill (λ = 0.1 by default: spending as much as always-largest costs ten points). The search tries
every subset of jurors (the integer part) and, for each, every weight at once with either sign (a
pilot found lower plan entropy, not higher, went with passing): `samples` random directions on the
unit sphere of normalised terms, then a shrinking local search around the best. Terms are normalised
by their spread on the training bids so the weights are comparable; the written weights are
converted back to the raw terms the auctioneer computes. Deterministic for a given seed.

Fit on MBPP problems 0–99 (`--tasks mbpp:0:100`); never on the evaluation split, nor on MBPP
problems 200 and above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marketplace.core.measures import Prices, priced
from marketplace.core.scoring import filled_jury
from marketplace.evaluation.baselines import by_price, juror_score
from marketplace.evaluation.matrix import Matrix
from schemas.events import Weights

DEFAULT_LAMBDA = 0.1


@dataclass(frozen=True)
class Terms:
    """The round-0 terms of every bid on every plan task, as arrays [task, agent, ...]."""

    agents: tuple[str, ...]
    cost: np.ndarray  # output price · plan tokens
    entropy: np.ndarray
    jury: np.ndarray  # [task, agent, juror]: juror scores, missing ones filled as scoring does
    passed: np.ndarray  # bool
    execution_cost: np.ndarray  # what the agent's draft of the task cost, at its prices
    plan_cost: np.ndarray  # [task, agent]: what writing its bid cost
    review_cost: np.ndarray  # [task, juror]: what its review of the task's bids cost


def terms(matrix: Matrix, prices: Prices) -> Terms:
    tasks = matrix.complete_tasks(plans=True)
    agents = matrix.agents
    shape = (len(tasks), len(agents))
    cost, entropy, passed, execution, plan, review = (np.zeros(shape) for _ in range(6))
    jury = np.zeros((*shape, len(agents)))
    for t, task_id in enumerate(tasks):
        reviews = {j: matrix.cell(task_id, j).review for j in agents}
        for a, agent_id in enumerate(agents):
            cell = matrix.cell(task_id, agent_id)
            price = prices[agent_id]
            cost[t, a] = price.output * cell.bid.plan_tokens  # as scoring.terms: a bid's price
            entropy[t, a] = cell.bid.entropy
            passed[t, a] = cell.passed
            execution[t, a] = priced(cell.result.usage, price)
            plan[t, a] = priced(cell.bid.usage, price)
            review[t, a] = priced(cell.review.usage, price)
            scores = {j: juror_score(r, cell.bid.bid_id) for j, r in reviews.items()}
            filled = filled_jury(scores)
            jury[t, a] = [filled[j] for j in agents]
    return Terms(agents, cost, entropy, jury, passed.astype(bool), execution, plan, review)


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


def utility(data: Terms, chosen: np.ndarray, lam: float, asked: np.ndarray) -> np.ndarray:
    """[candidate] → pass@1 − λ · cost relative to always-largest; `asked`: the jurors' mask."""
    tasks = np.arange(chosen.shape[1])
    passed = data.passed[tasks, chosen].mean(axis=1)
    auction = data.plan_cost.sum() + data.review_cost[:, asked].sum()
    spent = auction + data.execution_cost[tasks, chosen].sum(axis=1)
    largest = data.execution_cost[:, -1].sum() or 1.0  # always-largest: its draft, no auction
    return passed - lam * spent / largest


def search(
    data: Terms, lam: float = DEFAULT_LAMBDA, samples: int = 20_000, seed: int = 0
) -> tuple[np.ndarray, float]:
    """The best normalised weight vector over every subset of jurors, and its utility."""
    x, _ = features(data)
    rng = np.random.default_rng(seed)
    jurors = x.shape[2] - 2
    best, best_score = np.zeros(x.shape[2]), -np.inf
    for subset in range(2**jurors):
        asked = np.array([bool(subset >> j & 1) for j in range(jurors)])
        mask = np.concatenate([[True, True], asked])
        found, score = _search_masked(data, x, mask, lam, samples, rng)
        if score > best_score:
            best, best_score = found, score
    return best, best_score


def _search_masked(
    data: Terms,
    x: np.ndarray,
    mask: np.ndarray,
    lam: float,
    samples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """Random then local search over weights that are zero outside `mask`."""
    asked = mask[2:]

    def draw(centre: np.ndarray, spread: float, n: int) -> np.ndarray:
        w = (centre + spread * rng.normal(size=(n, x.shape[2]))) * mask
        return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)

    candidates = draw(np.zeros(x.shape[2]), 1.0, samples)
    scores = utility(data, winners(x, candidates), lam, asked)
    best, best_score = candidates[scores.argmax()], float(scores.max())
    for step in (0.5, 0.25, 0.1, 0.05):
        local = draw(best, step, samples // 10)
        local_scores = utility(data, winners(x, local), lam, asked)
        if local_scores.max() > best_score:
            best, best_score = local[local_scores.argmax()], float(local_scores.max())
    return best, best_score


def to_weights(normalised: np.ndarray, scale: np.ndarray, agents: Sequence[str]) -> Weights:
    """Weights on the raw terms the auctioneer computes (cost = w_c · price · plan tokens)."""
    raw = normalised / scale + 0.0  # + 0.0: no "-0.0" in the written file
    return Weights(
        cost=float(raw[0]),
        entropy=float(raw[1]),
        jury=0.0,
        jurors={agent: float(w) for agent, w in zip(agents, raw[2:], strict=True)},
    )


def fit(
    matrix: Matrix, prices: Prices, lam: float = DEFAULT_LAMBDA, seed: int = 0
) -> tuple[Weights, float]:
    """Weights for `matrix`'s agents (ordered cheapest first, as `routers.by_price` orders
    them), and their training utility."""
    ordered = tuple(by_price(matrix.agents, prices))
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
