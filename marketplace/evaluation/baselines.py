"""The methods SALE is compared with, and SALE without refinement, replayed over a matrix.

Every method here chooses, per task, one agent whose draft is the task's result; the matrix
already holds each agent's draft (its execution of the task with the chosen executor, no plan)
and the hidden verdict on it, so a method is only a choice and an account of what that choice
spent. Each function returns one `TaskRun` per task it can run, in the matrix's task order: the
routers run every task with every agent's draft (`Matrix.complete_tasks()`), SALE's round 0
the tasks where every agent has also bid and reviewed (`Matrix.complete_tasks(plans=True)`).

Accounting rule: a method pays for what it used. A router has no auction and no plan: the agent
it picks drafts the task, so a router pays that agent's draft under part "execution" and nothing
under the auction parts; a cascade pays the draft of every agent it tries. SALE pays every
agent's bid ("bids"), the review of every juror it asks ("jury") and the winner's draft
("execution"): each call under the part the live log books it by (`marketplace.core.spend`).
Tokens are priced per direction (`marketplace.core.measures.cost`).

Ties between equal prices go to the lower agent id, as in the auction's tie rule.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import TYPE_CHECKING
from uuid import UUID

import numpy as np

from marketplace.core import scoring, spend
from marketplace.core.measures import Prices, Spend, TaskRun
from marketplace.shared.embeddings import Embedder
from schemas.events import BidSubmitted, ReviewSubmitted, ScoredBid, TaskResult, Weights

if TYPE_CHECKING:  # the matrix module loads agents and the database driver; only types needed
    from marketplace.evaluation.matrix import Cell, Matrix

TIE = 1e-9  # estimated pass rates this close count as equal


def _spend(agent_id: str, call: BidSubmitted | ReviewSubmitted | TaskResult) -> Spend:
    """One call's usage as a spend, kept whole so that it is priced per direction, under the
    part the live log books it (`marketplace.core.spend`: a draft is an execution)."""
    part = spend.part(call)
    assert part is not None  # a bid, a review or a draft: each is priced
    return Spend(agent_id, part, call.usage)


def by_price(agents: Sequence[str], prices: Prices) -> list[str]:
    """Cheapest first by the output price, then by agent id: the order the auction itself uses
    (a bid carries its agent's output price, and only agents cheaper by it refine), so every
    method here escalates and breaks ties the same way."""
    return sorted(agents, key=lambda a: (prices[a].output, a))


def _routed(matrix: Matrix, task_id: str, agent_id: str, tried: Sequence[str]) -> TaskRun:
    """`agent_id`'s draft is the result; every agent in `tried` (it included) paid its draft."""
    paid = tuple(_spend(a, matrix.cell(task_id, a).result) for a in tried)
    chosen = matrix.cell(task_id, agent_id)
    return TaskRun(task_id, agent_id, chosen.passed, paid, chosen.outcome.score)


def always(matrix: Matrix, agent_id: str) -> list[TaskRun]:
    """The same agent for every task: with the largest agent, the reference."""
    if agent_id not in matrix.agents:
        raise ValueError(f"{agent_id!r} is not an agent of the matrix {matrix.agents}")
    return [_routed(matrix, t, agent_id, [agent_id]) for t in matrix.complete_tasks()]


def random_choice(matrix: Matrix, seed: int) -> list[TaskRun]:
    """A uniformly random agent per task: what choosing costs and earns without information."""
    rng = random.Random(seed)
    runs = []
    for task_id in matrix.complete_tasks():
        agent_id = rng.choice(matrix.agents)
        runs.append(_routed(matrix, task_id, agent_id, [agent_id]))
    return runs


def cascade(matrix: Matrix, prices: Prices) -> list[TaskRun]:
    """FrugalGPT-style: cheapest first, escalating while the agent's code fails the task's
    visible examples; the dearest agent is accepted regardless. Every try is paid for."""
    order = by_price(matrix.agents, prices)
    runs = []
    for task_id in matrix.complete_tasks():
        tried = []
        for agent_id in order:
            tried.append(agent_id)
            if matrix.cell(task_id, agent_id).self_check:
                break
        runs.append(_routed(matrix, task_id, tried[-1], tried))
    return runs


def foreseen(matrix: Matrix, prices: Prices) -> list[TaskRun]:
    """The cascade with foresight of the visible checks, a bound rather than a method: each task
    goes straight to the cheapest agent whose draft will pass its examples (the dearest if none
    will, or if the task prints no example), so no failing draft is ever paid for. A method that
    accepts the cheapest draft passing its examples, as SALE-lean does, cannot be cheaper
    without giving up pass@1: what it pays beyond this is the price of not knowing."""
    order = by_price(matrix.agents, prices)
    runs = []
    for task_id in matrix.complete_tasks():
        checked = task_id not in matrix.unchecked
        passing = [a for a in order if checked and matrix.cell(task_id, a).self_check]
        agent_id = passing[0] if passing else order[-1]
        runs.append(_routed(matrix, task_id, agent_id, [agent_id]))
    return runs


def oracle(matrix: Matrix, prices: Prices) -> list[TaskRun]:
    """The cheapest agent that passes the hidden checks (the cheapest if none does): the bound
    no router can beat on cost at the best achievable pass rate."""
    order = by_price(matrix.agents, prices)
    runs = []
    for task_id in matrix.complete_tasks():
        passing = [a for a in order if matrix.cell(task_id, a).passed]
        agent_id = passing[0] if passing else order[0]
        runs.append(_routed(matrix, task_id, agent_id, [agent_id]))
    return runs


def embeddings_for(matrices: Sequence[Matrix], embed: Embedder) -> dict[str, np.ndarray]:
    """Unit vectors of every task's prompt, for the kNN router."""
    prompts = {t: p for m in matrices for t, p in m.prompts.items()}
    ids = sorted(prompts)
    vectors = embed([prompts[t] for t in ids])
    return dict(zip(ids, vectors, strict=True))


def neighbours(
    task_id: str, train_tasks: Sequence[str], embeddings: Mapping[str, np.ndarray], k: int
) -> list[str]:
    """The `k` train tasks most similar to `task_id` (cosine of unit vectors), ties by id."""
    query = embeddings[task_id]
    similarity = {t: float(np.dot(embeddings[t], query)) for t in train_tasks}
    return sorted(train_tasks, key=lambda t: (-similarity[t], t))[:k]


def knn(
    train: Matrix,
    test: Matrix,
    embeddings: Mapping[str, np.ndarray],
    prices: Prices,
    k: int = 10,
) -> list[TaskRun]:
    """A learned router: per test task, each agent's pass rate on the `k` most similar train
    tasks; the cheapest agent with the best rate executes. Only train outcomes are read."""
    if overlap := set(train.tasks) & set(test.tasks):
        raise ValueError(f"train and test share tasks: {sorted(overlap)}")
    if set(train.agents) != set(test.agents):
        raise ValueError(f"train agents {train.agents} differ from test agents {test.agents}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    known = train.complete_tasks()
    if not known:
        raise ValueError("the train matrix has no complete task")
    order = by_price(test.agents, prices)
    runs = []
    for task_id in test.complete_tasks():
        near = neighbours(task_id, known, embeddings, k)
        rate = {a: fmean(train.cell(t, a).passed for t in near) for a in order}
        top = max(rate.values())
        agent_id = next(a for a in order if rate[a] >= top - TIE)
        runs.append(_routed(test, task_id, agent_id, [agent_id]))
    return runs


def juror_score(review: ReviewSubmitted, bid_id: UUID) -> float | None:
    """The juror's score of one bid; None if its review did not score it."""
    return next((s.score for s in review.scores if s.bid_id == bid_id), None)


def _plan_cells(matrix: Matrix, task_id: str) -> dict[str, Cell]:
    """Each agent's cell of a task where every agent bid and reviewed; any other task is an
    error, since the auction cannot be replayed on it."""
    cells = {a: matrix.cell(task_id, a) for a in matrix.agents}
    if missing := [a for a, c in cells.items() if c.bid is None or c.review is None]:
        raise ValueError(f"{task_id}: no bid or review from {', '.join(missing)}")
    return cells


def scored_bids(matrix: Matrix, task_id: str, weights: Weights, prices: Prices) -> list[ScoredBid]:
    """Every round-0 bid of the task, at the price table's output prices (a plan is generated
    text), scored by the jurors the auction would ask (those of non-zero weight), in the
    matrix's agent order: the auction's round 0 as the auctioneer would score it."""
    cells = _plan_cells(matrix, task_id)
    asked = jurors(matrix, weights)
    scored = []
    for agent_id, cell in cells.items():
        bid = cell.bid.model_copy(update={"price": prices[agent_id].output})
        jury = {juror: juror_score(cells[juror].review, bid.bid_id) for juror in asked}
        scored.append(scoring.score_bid(bid, jury, weights))
    return scored


def jurors(matrix: Matrix, weights: Weights) -> list[str]:
    """The agents the auction asks to judge: a juror of weight 0 could change nothing."""
    return [a for a in matrix.agents if scoring.juror_weight(weights, a) != 0]


def sale_round0(matrix: Matrix, weights: Weights, prices: Prices) -> list[TaskRun]:
    """SALE without refinement, on the tasks where every agent bid and reviewed: the best-scored
    round-0 bid wins and its agent's draft is the result. Every bid and every review asked for
    is paid for, as the auction spends them whoever wins, and then the winner's draft."""
    runs = []
    for task_id in matrix.complete_tasks(plans=True):
        winner = scoring.best(scored_bids(matrix, task_id, weights, prices), 0)
        assert winner is not None  # a plan task has every agent's bid, and no budget
        cells = _plan_cells(matrix, task_id)
        won = cells[winner.agent_id]
        paid = (
            *(_spend(a, c.bid) for a, c in cells.items()),
            *(_spend(j, cells[j].review) for j in jurors(matrix, weights)),
            _spend(winner.agent_id, won.result),
        )
        runs.append(TaskRun(task_id, winner.agent_id, won.passed, paid, won.outcome.score))
    return runs
