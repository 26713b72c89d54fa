"""Budgets, pure: whether a task may be auctioned at all, before any agent is asked.

Two limits, each optional. A tenant's budget (`[tenants.<name>] budget`) caps what all its tasks
spend together, as the log's `spend` counts it (bids, jury, refinement, execution); a task's own
`budget` caps what that task may spend. A task is refused

- when its own budget cannot cover even the cheapest live agent's expected cost (a draft's cost
  estimate in the lean auction, the agent's prior in the paper's): no agent could do it for that;
- when its tenant has nothing left, or less left than the task may spend (its own budget if it
  has one, else the cheapest live agent's expected cost).

The auctioneer gathers the terms (`Refusal`: the tenant's budget and spend, the task's budget,
the cheapest live agent and its expected cost) and records a refusal as the auction's close,
reason `over_budget`, with the terms and the reason in words; replay recomputes it from the
terms alone with `why_refused`.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.events import AuctionClosed, Mechanism, Refusal, TaskPosted

PRODUCER = "auctioneer"


def limited(task: TaskPosted, tenant_budget: float | None) -> bool:
    """Whether any limit applies to the task (otherwise there is nothing to look up)."""
    return tenant_budget is not None or task.budget is not None


def terms(
    task: TaskPosted,
    tenant_budget: float | None,
    tenant_spent: float,
    expected: Mapping[str, float],
) -> Refusal:
    """The terms a refusal of `task` is decided on; `expected`: each live agent of the task's
    kind and its expected cost. Ties between the cheapest go to the first agent id."""
    cheapest = min(sorted(expected.items()), key=lambda item: item[1], default=None)
    return Refusal(
        tenant=task.tenant,
        tenant_budget=tenant_budget,
        tenant_spent=tenant_spent,
        task_budget=task.budget,
        cheapest_agent=cheapest[0] if cheapest else None,
        cheapest_cost=cheapest[1] if cheapest else None,
    )


def why_refused(t: Refusal) -> str | None:
    """Why the task is refused, in words, or None when it may be auctioned."""
    cheapest = f"the cheapest live agent, {t.cheapest_agent}, is expected to cost"
    known = t.task_budget is not None and t.cheapest_cost is not None
    if known and t.task_budget < t.cheapest_cost:
        return (
            f"the task's budget {t.task_budget:.6g} cannot cover even the cheapest live "
            f"agent: {t.cheapest_agent} is expected to cost {t.cheapest_cost:.6g}"
        )
    if t.tenant_budget is None:
        return None
    left = t.tenant_budget - t.tenant_spent
    spent = f"tenant {t.tenant} has spent {t.tenant_spent:.6g} of its budget {t.tenant_budget:.6g}"
    if left <= 0:
        return f"{spent}: nothing is left"
    if t.task_budget is not None and t.task_budget > left:
        return f"{spent}; {left:.6g} is left, and the task's budget is {t.task_budget:.6g}"
    if t.task_budget is None and t.cheapest_cost is not None and t.cheapest_cost > left:
        return f"{spent}; {left:.6g} is left, and {cheapest} {t.cheapest_cost:.6g}"
    return None


def refusal(task: TaskPosted, t: Refusal, mechanism: Mechanism) -> AuctionClosed | None:
    """The auction's close refusing `task` on terms `t`, or None when they allow it."""
    why = why_refused(t)
    if why is None:
        return None
    return AuctionClosed(
        producer=PRODUCER,
        task_id=task.task_id,
        reason="over_budget",
        mechanism=mechanism,
        refusal=t,
        detail=why,
    )
