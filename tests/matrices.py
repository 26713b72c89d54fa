"""Hand-built matrices with known answers, for the routers', the benchmark's and the fit's tests.

Agents S, M, L cost 1, 2 and 4 per million tokens. Every bid uses 0.2 Mtok, every execution
0.8 Mtok and every review 0.5 Mtok, so one agent's plan and execution is exactly 1 Mtok and
costs exactly its price. Bids carry price 0: a method that forgot to apply the price table
would choose differently.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from marketplace.matrix import Cell, Matrix
from schemas.events import BidScore, BidSubmitted, ReviewSubmitted, TaskOutcome, TaskResult, Usage

AGENTS = ("S", "M", "L")
PRICES = {"S": 1.0, "M": 2.0, "L": 4.0}
BID = Usage(requests=1, prompt_tokens=150_000, completion_tokens=50_000, seconds=1.0)
RESULT = Usage(requests=1, prompt_tokens=600_000, completion_tokens=200_000, seconds=2.0)
REVIEW = Usage(requests=1, prompt_tokens=400_000, completion_tokens=100_000, seconds=0.5)
Scores = dict[str, tuple[float | None, ...]]  # bidder → each juror's score, in AGENTS order


def bid_id(task: str, agent: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"{task}/{agent}")


def cell(task: str, agent: str, passed: bool, checked: bool, scores: Scores) -> Cell:
    juror = AGENTS.index(agent)
    given = [
        BidScore(bid_id=bid_id(task, bidder), score=s[juror])
        for bidder, s in scores.items()
        if s[juror] is not None  # None: this juror's review left the bid out
    ]
    return Cell(
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
        review=ReviewSubmitted(
            producer=agent, task_id=task, juror=agent, scores=given, usage=REVIEW
        ),
    )


def build(
    passed: dict[str, str],
    checks: dict[str, str] | None = None,
    scores: dict[str, Scores] | None = None,
) -> Matrix:
    """`passed[task]`: agents passing the hidden checks; `checks[task]`: those passing the
    visible examples (default: the same); `scores[task]`: the jury (default: 3 from everyone)."""
    cells = {}
    for task, passing in passed.items():
        checked = (checks or {}).get(task, passing)
        jury = (scores or {}).get(task, {a: (3.0, 3.0, 3.0) for a in AGENTS})
        for agent in AGENTS:
            cells[(task, agent)] = cell(task, agent, agent in passing, agent in checked, jury)
    return Matrix(
        tasks=tuple(passed), agents=AGENTS, cells=cells, prompts=dict.fromkeys(passed, "p")
    )
