"""A task as a client posts it: the visible `TaskPosted` and its hidden `TaskChecks`, and the
one way both are sent (the job, `sale publish` and the benchmark's live runs all post so)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from marketplace.shared.bus import Bus
from schemas.events import TaskChecks, TaskPosted

PRODUCER = "client"


@dataclass(frozen=True)
class Posting:
    task: TaskPosted
    checks: TaskChecks | None


async def publish_one(bus: Bus, posting: Posting) -> None:
    """Checks first, so the verifier never sees a result before it could know the checks exist.

    Both are stamped as they are sent: a job parses its postings at the start and sends them
    one by one for hours, and the verifier gives up on checks an hour after their posting."""
    now = datetime.now(UTC)
    if posting.checks is not None:
        await bus.publish(posting.checks.model_copy(update={"occurred_at": now}))
    await bus.publish(posting.task.model_copy(update={"occurred_at": now}))
