"""What can become of a task that gets no answer: one family, `SubmitError`.

`InvalidTask` (refused before posting, nothing sent), `Refused` (the auction refused the task,
e.g. over its tenant's budget: `reason`, `detail`), `SubmitTimeout` (no final answer in time:
which step is missing, and the outcome so far). Each carries the `Outcome` known of the task,
so whoever catches one (`sale submit`, the front door's HTTP errors) can say what happened.
"""

from __future__ import annotations

from marketplace.log.outcomes import Outcome


class SubmitError(Exception):
    """A task that got no answer. `task_id` names it; `outcome` is what is known of it."""

    def __init__(self, message: str, task_id: str = "", outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.outcome = outcome


class InvalidTask(SubmitError):
    """The task cannot be posted as it is; nothing was sent."""


class Refused(SubmitError):
    """The auction refused the task: `reason` (e.g. "over_budget") and `detail` say why."""

    def __init__(self, outcome: Outcome) -> None:
        self.reason = outcome.reason or "refused"
        self.detail = outcome.detail
        super().__init__(
            f"task {outcome.task_id} refused: {self.reason}: {self.detail}",
            outcome.task_id,
            outcome,
        )


class SubmitTimeout(SubmitError):
    """No final answer within `timeout_s`; the message names the step still missing."""

    def __init__(self, task_id: str, timeout_s: float, outcome: Outcome | None) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            f"task {task_id}: no answer within {timeout_s:g} s: {missing(outcome)}",
            task_id,
            outcome,
        )


def missing(outcome: Outcome | None) -> str:
    """What a task still waits for, and who should have said it, from its outcome so far."""
    status = outcome.status if outcome else "posted"
    if status in ("posted", "open"):
        return (
            "the auction has not closed (is the auctioneer running, and is a live agent "
            f"taking {outcome.kind if outcome and outcome.kind else 'this kind of'} tasks?)"
        )
    if status == "awarded":
        return f"the winner, {outcome.winner_agent_id}, has delivered no result"
    if status == "delivered":
        return "the verifier has not judged the result (is `sale verifier` running?)"
    return f"the task is {status}, but part of its record was not seen"
