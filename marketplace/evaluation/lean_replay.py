"""SALE-lean replayed over the matrix, its ablations, and the fit of its priors.

The matrix holds every agent's draft of every task (and the escalation drafts written after a
cheaper agent's failing one), so the lean auction is replayed from it exactly as the live
auctioneer would run it (`marketplace.core.lean_policy` makes every decision), task after task
in a given
order, with the memory growing as it would in the log: a draft the auction asked for is
remembered with its verdict on the visible examples, and the winner's with the hidden checks'
verdict too. Nothing is computed here that the live auction would not know at that moment.

Accounting: every draft the auction asked for is paid; the winner's draft is the task's
execution, every other draft is the auction's cost (`marketplace.core.spend.draft_part`, the
rule the live log books drafts by).

Variants (ablations):
- "full": memory estimates, calls in reservation order with the stopping rule, drafts as bids,
  escalation with the failing draft as feedback;
- "no memory": the priors alone (the memory never grows);
- "no evidence": the agent with the best expected worth minus cost executes, no calls in turn,
  no drafts judged (a memory router);
- "all at once": every agent worth asking (reservation value above 0) drafts at once, the best
  draft wins (no stopping rule).
Whether escalation drafts fix the cheaper agent's failing draft or start anew is a setting
(`lean.Settings.feedback`), chosen with the others on the development split.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import TYPE_CHECKING, Literal

import numpy as np

from marketplace.core import lean_policy, spend
from marketplace.core.measures import Prices, Spend, TaskRun
from marketplace.shared.config import Config, LeanConfig, PriorConfig

if TYPE_CHECKING:  # the matrix module loads agents and the database driver; only types needed
    from marketplace.evaluation.matrix import Draft, Matrix

Variant = Literal["full", "no memory", "no evidence", "all at once"]
VARIANTS: tuple[Variant, ...] = ("full", "no memory", "no evidence", "all at once")


@dataclass(frozen=True)
class Remembered:
    """A draft in the memory: `lean.Record` without the similarity, which depends on the query."""

    task_id: str
    agent_id: str
    examples_pass: bool
    right: bool | None
    cost: float


def draft_cost(draft: Draft, agent_id: str, prices: Prices) -> float:
    u = draft.result.usage
    return prices[agent_id].cost(u.prompt_tokens, u.completion_tokens, u.cached_tokens)


def fit_priors(train: Matrix, prices: Prices) -> dict[str, lean_policy.Prior]:
    """Each agent's prior from the training split: the rates of its drafts (add-one smoothed,
    so no rate is exactly 0 or 1) and their mean cost."""
    priors = {}
    tasks = train.complete_tasks()
    for agent_id in train.agents:
        cells = [train.cell(t, agent_id) for t in tasks]
        checked = [c for c in cells if c.self_check]
        unchecked = [c for c in cells if not c.self_check]
        priors[agent_id] = lean_policy.Prior(
            examples_pass=_smoothed(len(checked), len(cells)),
            right_if_pass=_smoothed(sum(c.passed for c in checked), len(checked)),
            right_if_fail=_smoothed(sum(c.passed for c in unchecked), len(unchecked)),
            cost=fmean(draft_cost(c, agent_id, prices) for c in cells),
        )
    return priors


def _smoothed(hits: int, n: int) -> float:
    return (hits + 1) / (n + 2)


def recall(
    memory: Sequence[Remembered], task_id: str, embeddings: Mapping[str, np.ndarray]
) -> list[lean_policy.Record]:
    """The memory as records, each with its task's cosine similarity to `task_id`."""
    query = embeddings[task_id]
    return [
        lean_policy.Record(
            m.agent_id,
            float(np.dot(embeddings[m.task_id], query)),
            m.examples_pass,
            m.right,
            m.cost,
        )
        for m in memory
    ]


class Missing(LookupError):
    """The matrix lacks a draft this replay needs: `agent_id`'s escalation after `after`'s
    failing draft on `task_id` (`sale bench compare` computes it and replays again)."""

    def __init__(self, task_id: str, agent_id: str, after: str) -> None:
        super().__init__(f"{task_id}: no escalation of {agent_id} after {after}")
        self.task_id, self.agent_id, self.after = task_id, agent_id, after


def run_task(
    matrix: Matrix,
    task_id: str,
    estimates: Sequence[lean_policy.Estimate],
    prices: Prices,
    settings: lean_policy.Settings,
    variant: Variant,
) -> tuple[TaskRun, list[tuple[str, Draft]]]:
    """One lean auction over the matrix: the run, and the drafts it asked for (by agent)."""
    out = {a: prices[a].output for a in matrix.agents}
    value = settings.value
    if variant == "no evidence":
        best = max(estimates, key=lambda e: (_expected(e, value) - e.cost, -out[e.agent_id]))
        asked = [(best.agent_id, matrix.cell(task_id, best.agent_id))]
        return _run(task_id, asked, best.agent_id, asked[0][1]), asked
    if variant == "all at once":
        worth_asking = [e for e in estimates if e.reservation > 0] or [
            max(estimates, key=lambda e: e.reservation)
        ]
        asked = [(e.agent_id, matrix.cell(task_id, e.agent_id)) for e in worth_asking]
        drafts = [lean_policy.Draft(a, d.self_check) for a, d in asked]
        winner = lean_policy.best_draft(drafts, {e.agent_id: e for e in estimates}, out, value)
        won = next(d for a, d in asked if a == winner.agent_id)
        return _run(task_id, asked, winner.agent_id, won), asked
    asked, drafts = [], []
    checkable = task_id not in matrix.unchecked
    first = None if checkable else lean_policy.pick(settings.uncheckable, estimates, out)
    while True:
        step = lean_policy.next_step(
            estimates,
            out,
            drafts,
            value,
            feedback=settings.feedback,
            checkable=checkable,
            first=first,
        )
        if step.ask is None:
            break
        draft = _draft(matrix, task_id, step)
        asked.append((step.ask, draft))
        drafts.append(lean_policy.Draft(step.ask, draft.self_check))
    won = next(d for a, d in reversed(asked) if a == step.winner)
    return _run(task_id, asked, step.winner, won), asked


def _expected(e: lean_policy.Estimate, value: float) -> float:
    return value * (e.examples_pass * e.right_if_pass + (1 - e.examples_pass) * e.right_if_fail)


def _draft(matrix: Matrix, task_id: str, step: lean_policy.Step) -> Draft:
    if step.feedback_from is None:
        return matrix.cell(task_id, step.ask)
    draft = matrix.escalation(task_id, step.ask, step.feedback_from)
    if draft is None:
        raise Missing(task_id, step.ask, step.feedback_from)
    return draft


def _run(task_id: str, asked: list[tuple[str, Draft]], winner: str, won: Draft) -> TaskRun:
    paid = tuple(Spend(a, spend.draft_part(d is won), d.result.usage) for a, d in asked)
    return TaskRun(task_id, winner, won.passed, paid, won.outcome.score)


def lean_runs(
    matrix: Matrix,
    order: Sequence[str],
    priors: Mapping[str, lean_policy.Prior],
    settings: lean_policy.Settings,
    prices: Prices,
    embeddings: Mapping[str, np.ndarray],
    variant: Variant = "full",
) -> list[TaskRun]:
    """SALE-lean over `order` (task ids of the matrix), the memory growing task by task."""
    memory: list[Remembered] = []
    runs = []
    for task_id in order:
        ruled = task_id in matrix.unchecked  # first call by the agents' records, not neighbours
        records = [] if variant == "no memory" or ruled else recall(memory, task_id, embeddings)
        estimates = [lean_policy.estimate(a, priors[a], records, settings) for a in matrix.agents]
        run, asked = run_task(matrix, task_id, estimates, prices, settings, variant)
        runs.append(run)
        won = next(s.usage for s in run.spend if s.part == "execution")
        for agent_id, draft in asked:
            graded = agent_id == run.executor and draft.result.usage is won
            memory.append(
                Remembered(
                    task_id,
                    agent_id,
                    draft.self_check,
                    draft.passed if graded else None,
                    draft_cost(draft, agent_id, prices),
                )
            )
    return runs


def orders(tasks: Sequence[str], count: int) -> list[list[str]]:
    """Order 0 is the dataset's; order k shuffles it with seed k, as the live runs do
    (`marketplace.evaluation.live.ordered`), so a live run and its replay see the tasks in one
    order."""
    from marketplace.evaluation.live import ordered

    return [ordered(tasks, k) for k in range(count)]


# --- choosing the settings on the development split ------------------------------------------

VALUES = (1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 40.0)  # × the dearest agent's prior cost
NEIGHBOURS = (10, 20)
STRENGTHS = (4.0, 8.0, 16.0)
MIN_SIMILARITY = (0.0, 0.4, 0.6)
FEEDBACK = (False, True)
ORDERS = 3


@dataclass(frozen=True)
class Capture:
    """How much of the oracle's gain over always-largest a method captures, on each axis:
    1 = all of it, 0 = none, negative = worse than always-largest."""

    settings: lean_policy.Settings
    pass_gain: float
    cost_gain: float

    @property
    def least(self) -> float:
        return min(self.pass_gain, self.cost_gain)


def capture(
    runs: Sequence[TaskRun], largest: Sequence[TaskRun], oracle: Sequence[TaskRun], prices: Prices
) -> tuple[float, float]:
    """(share of the oracle's pass@1 gain, share of its cost saving), both against always-L."""
    from marketplace.core.measures import cost

    def rate(rs: Sequence[TaskRun]) -> float:
        return fmean(r.passed for r in rs)

    def spent(rs: Sequence[TaskRun]) -> float:
        return cost([s for r in rs for s in r.spend], prices)

    pass_room = rate(oracle) - rate(largest)
    cost_room = 1 - spent(oracle) / spent(largest)
    pass_gain = (rate(runs) - rate(largest)) / pass_room if pass_room else 0.0
    cost_gain = (1 - spent(runs) / spent(largest)) / cost_room if cost_room else 0.0
    return pass_gain, cost_gain


def choose(
    dev: Matrix,
    priors: Mapping[str, lean_policy.Prior],
    prices: Prices,
    embeddings: Mapping[str, np.ndarray],
    largest: Sequence[TaskRun],
    oracle: Sequence[TaskRun],
) -> list[Capture]:
    """Every setting of the grid on the development split, best first: the one that captures
    the most of the oracle's gain on its weaker axis (mean over three task orders). A setting
    that needs escalation drafts the matrix lacks (`sale bench matrix --escalate`) is left out."""
    dearest = max(priors.values(), key=lambda p: p.cost).cost
    tasks = dev.complete_tasks()
    found = []
    grid = itertools.product(VALUES, NEIGHBOURS, STRENGTHS, MIN_SIMILARITY, FEEDBACK)
    for value, neighbours, strength, floor, feedback in grid:
        settings = lean_policy.Settings(value * dearest, neighbours, strength, floor, feedback)
        try:
            gains = [
                capture(
                    lean_runs(dev, order, priors, settings, prices, embeddings),
                    largest,
                    oracle,
                    prices,
                )
                for order in orders(tasks, ORDERS)
            ]
        except Missing:
            continue  # it needs escalations the matrix does not hold: not a candidate
        found.append(Capture(settings, fmean(g[0] for g in gains), fmean(g[1] for g in gains)))
    return sorted(found, key=lambda c: -c.least)


# --- the command: `sale lean fit` ------------------------------------------------------------


async def fit_lean(
    config: Config, train_specs: Sequence[str], dev_specs: Sequence[str]
) -> tuple[LeanConfig, list[Capture]]:
    """Priors fitted on `train_specs`, settings chosen on `dev_specs`: the [auction.lean] table."""
    from marketplace.evaluation import baselines, matrix
    from marketplace.shared import embeddings

    prices = {a.id: a.price for a in config.agents}
    train = await matrix.load_split(config, train_specs)
    dev = await matrix.load_split(config, dev_specs)
    if not train.complete_tasks() or not dev.complete_tasks():
        raise ValueError("no complete matrix rows: run `sale bench matrix` on both splits first")
    priors = fit_priors(train, prices)
    vectors = baselines.embeddings_for([dev], embeddings.embed)
    largest = max(prices, key=lambda a: (prices[a].output, a))
    ranked = choose(
        dev,
        priors,
        prices,
        vectors,
        baselines.always(dev, largest),
        baselines.oracle(dev, prices),
    )
    best = ranked[0].settings
    table = LeanConfig(**vars(best), priors={a: PriorConfig(**vars(p)) for a, p in priors.items()})
    return table, ranked


def lean_toml(table: LeanConfig, note: str) -> str:
    """The [auction.lean] table as TOML, headed by `note` (how it was made)."""
    lines = [f"# {note}", "[auction.lean]"]
    lines += [f"value = {table.value!r}", f"neighbours = {table.neighbours}"]
    lines += [f"strength = {table.strength!r}", f"min_similarity = {table.min_similarity!r}"]
    lines += [f"feedback = {'true' if table.feedback else 'false'}"]
    for agent_id, prior in table.priors.items():
        lines += ["", f"[auction.lean.priors.{agent_id}]"]
        lines += [f"{k} = {v!r}" for k, v in prior.model_dump().items()]
    return "\n".join(lines) + "\n"


def with_lean(existing: str, block: str) -> str:
    """`existing` weights-file text with its lean block (if any) replaced by `block`."""
    kept = []
    for line in existing.splitlines():
        if line.startswith("# sale lean fit") or line.startswith("[auction.lean"):
            break
        kept.append(line)
    return "\n".join(kept).rstrip("\n") + ("\n\n" if kept else "") + block
