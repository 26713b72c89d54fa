"""What the front door needs of the marketplace's client: one call that runs a prompt as a task
through an auction and returns its outcome, and the ways that call can fail.

The front door is a service and the client is composed in by the command line, so the door
names only this seam: `sale serve` hands it the real client (`marketplace.app.serve` turns the
client's errors into these), and the tests of the HTTP shapes hand it a stand-in.
"""

from __future__ import annotations

from typing import Any, Protocol


class Answer(Protocol):
    """The fields of the client's `Outcome` the door reads."""

    task_id: str
    status: str  # passed, failed, answered, no_bids, refused, ...
    passed: bool | None
    winner_agent_id: str | None
    model: str | None
    output: str | None
    cost: float
    usage: Any  # prompt_tokens and completion_tokens
    reason: str | None
    mechanism: str | None


class Asker(Protocol):
    async def ask(
        self,
        prompt: str,
        tenant: str = "default",
        budget: float | None = None,
        timeout_s: float = 300.0,
    ) -> Answer: ...


class AskError(Exception):
    """The task could not be run (the broker cannot be reached, the task could not be sent)."""


class AskInvalid(AskError):
    """The request cannot be a task as it is (nothing was posted)."""


class AskRefused(AskError):
    """The marketplace refused the task: over the tenant's budget."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AskTimeout(AskError):
    """No outcome within the request's time."""
