"""A refusal checked: an `over_budget` close (`marketplace.core.budget`) recomputed from the
terms it records (the tenant's budget and spend, the task's budget, the cheapest live agent's
expected cost), and those of the task's own terms the log holds against the task as posted.
"""

from __future__ import annotations

from marketplace.core import budget
from marketplace.log.replay.discrepancy import Discrepancy, differ
from marketplace.log.replay.history import Evidence
from schemas.events import AuctionClosed


def check_refusal(closed: AuctionClosed, evidence: Evidence | None = None) -> list[Discrepancy]:
    """A refusal recomputed from its recorded terms (`budget.why_refused`); the task's own
    terms (tenant, budget) against the task as posted; and no agent was asked."""
    task_id, terms = closed.task_id, closed.refusal
    why = budget.why_refused(terms)
    found = [
        *differ(task_id, "reason", closed.reason, "over_budget" if why else "not refused"),
        *differ(task_id, "detail", closed.detail, why),
    ]
    if evidence is None:
        return found
    if evidence.task is not None:
        found += differ(task_id, "refusal.tenant", terms.tenant, evidence.task.tenant)
        found += differ(task_id, "refusal.task_budget", terms.task_budget, evidence.task.budget)
    if evidence.calls:
        found.append(Discrepancy(task_id, "calls", len(evidence.calls), "none: refused"))
    return found
