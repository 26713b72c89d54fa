"""Hand-built matrices with known answers, for the routers', the benchmark's and the fit's tests.

Agents S, M, L cost 1, 2 and 4 per million tokens, read or written (`PRICES`: input and output
prices equal, so figures stay whole; `SPLIT` prices the directions apart). Every draft uses
1 Mtok (0.75 read, 0.25 written), every bid 0.2 Mtok and every review 0.5 Mtok, so one agent's
draft costs exactly its price. Bids carry price 0: a method that forgot to apply the price table
would choose differently.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from uuid import NAMESPACE_URL, UUID, uuid5

from marketplace.evaluation.matrix import Cell, Matrix
from schemas.events import (
    BidScore,
    BidSubmitted,
    Price,
    ReviewSubmitted,
    TaskOutcome,
    TaskResult,
    Usage,
)

AGENTS = ("S", "M", "L")
PRICES = {a: Price(input=p, output=p) for a, p in zip(AGENTS, (1.0, 2.0, 4.0), strict=True)}
# Reading is cheap, writing dear, and the order by output price is not the order by input price.
SPLIT = {
    "S": Price(input=0.5, output=2.0),
    "M": Price(input=0.25, output=6.0),
    "L": Price(input=1.0, output=12.0),
}
BID = Usage(requests=1, prompt_tokens=150_000, completion_tokens=50_000, seconds=1.0)
RESULT = Usage(requests=1, prompt_tokens=750_000, completion_tokens=250_000, seconds=2.0)
REVIEW = Usage(requests=1, prompt_tokens=400_000, completion_tokens=100_000, seconds=0.5)
Scores = dict[str, tuple[float | None, ...]]  # bidder → each juror's score, in AGENTS order


def bid_id(task: str, agent: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"{task}/{agent}")


def cell(
    task: str, agent: str, passed: bool, checked: bool, scores: Scores, plans: bool = True
) -> Cell:
    """One agent's draft of the task and, with `plans`, its bid and its review."""
    draft = Cell(
        result=TaskResult(
            producer=agent,
            task_id=task,
            agent_id=agent,
            bid_id=bid_id(task, agent),
            output="def f(): ...",
            usage=RESULT,
            error=None if checked else "visible example failed",
        ),
        outcome=TaskOutcome(producer="verifier", task_id=task, passed=passed, score=float(passed)),
    )
    return planned(draft, task, agent, scores) if plans else draft


def planned(draft: Cell, task: str, agent: str, scores: Scores) -> Cell:
    """The draft's cell with the agent's round-0 bid and its review of the task's bids."""
    juror = AGENTS.index(agent)
    given = [
        BidScore(bid_id=bid_id(task, bidder), score=s[juror])
        for bidder, s in scores.items()
        if s[juror] is not None  # None: this juror's review left the bid out
    ]
    return replace(
        draft,
        bid=BidSubmitted(
            producer=agent,
            task_id=task,
            bid_id=bid_id(task, agent),
            agent_id=agent,
            model=f"model-{agent}",
            plan=f"{agent}'s plan",
            plan_tokens=100,
            entropy=0.0,
            price=0.0,
            usage=BID,
        ),
        review=ReviewSubmitted(
            producer=agent, task_id=task, juror=agent, scores=given, usage=REVIEW
        ),
    )


def build(
    passed: dict[str, str],
    checks: dict[str, str] | None = None,
    scores: dict[str, Scores] | None = None,
    drafts_only: Collection[str] = (),
) -> Matrix:
    """`passed[task]`: agents passing the hidden checks; `checks[task]`: those passing the
    visible examples (default: the same); `scores[task]`: the jury (default: 3 from everyone);
    `drafts_only`: tasks without bids and reviews (the paper's auction does not run on them)."""
    cells = {}
    for task, passing in passed.items():
        checked = (checks or {}).get(task, passing)
        jury = (scores or {}).get(task, {a: (3.0, 3.0, 3.0) for a in AGENTS})
        plans = task not in drafts_only
        for agent in AGENTS:
            cells[(task, agent)] = cell(
                task, agent, agent in passing, agent in checked, jury, plans
            )
    return Matrix(
        tasks=tuple(passed), agents=AGENTS, cells=cells, prompts=dict.fromkeys(passed, "p")
    )
