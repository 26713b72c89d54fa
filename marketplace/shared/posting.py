"""A task as a client posts it: the visible `TaskPosted` and its hidden `TaskChecks`, and the
one way both are sent (the job, `sale publish`, `sale submit`, the Python `Client` and the
benchmark's live runs all post so)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from marketplace.shared.bus import Bus
from schemas.events import GeneralChecks, TaskChecks, TaskPosted

PRODUCER = "client"


@dataclass(frozen=True)
class Posting:
    task: TaskPosted
    checks: TaskChecks | None


def default_checks(task: TaskPosted) -> TaskChecks | None:
    """The checks a task goes with when none are given: a general task's (nothing hidden, so
    the verifier records the answer as answered instead of waiting for checks that never
    come); the other kinds have none to give."""
    if task.kind != "general":
        return None
    return TaskChecks(producer=task.producer, task_id=task.task_id, checks=GeneralChecks())


def misfit(task: TaskPosted, checks: TaskChecks | None) -> str | None:
    """Why `checks` cannot go with `task`, or None: checks of another task, or of another kind
    (a coding task with general checks would be recorded as answered, never graded)."""
    if checks is None:
        return None
    if checks.task_id != task.task_id:
        return f"task {task.task_id}: its checks are for task {checks.task_id}"
    if checks.checks.kind != task.kind:
        return f"task {task.task_id}: {checks.checks.kind} checks for a {task.kind} task"
    return None


async def publish_one(bus: Bus, posting: Posting) -> None:
    """Checks first, so the verifier never sees a result before it could know the checks exist.

    Both are stamped as they are sent: a job parses its postings at the start and sends them
    one by one for hours, and the verifier gives up on checks an hour after their posting."""
    now = datetime.now(UTC)
    if posting.checks is not None:
        await bus.publish(posting.checks.model_copy(update={"occurred_at": now}))
    await bus.publish(posting.task.model_copy(update={"occurred_at": now}))
