"""Stopping within a bound: each step on a service's way out is given at most its share of one
deadline, and whatever does not finish in time is abandoned.

Abandoning is safe because nothing is committed before it is done: a handler cut short, a
verification cancelled, a transaction rolled back, a decision not acknowledged leaves its
offset uncommitted, and the record is read again by the next owner of its partition. What
is lost is only time. A step that waits on the broker (a commit, leaving the group, flushing
the producer) waits at most its bound even when the broker is gone.

`begin(seconds)` sets the deadline for the whole stop (`marketplace.services.process` does,
on SIGTERM); `within` then gives each step the smaller of its own bound and what is left. With
no deadline set (a service stopped inside a test, a client's `async with`), each step has its
own bound only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable

log = logging.getLogger("sale.stopping")

STOP_S = 4.0  # the whole stop, from the signal: a service process is gone within 5 s
HANDLER_S = 1.5  # work in hand (a handler, a verification, a transaction) may finish in this
COMMIT_S = 1.0  # the last commit of what was done
LEAVE_S = 0.5  # leaving a consumer group, flushing a producer, closing a pool: each

_deadline = math.inf  # time.monotonic() by which the whole stop must be over


def begin(seconds: float | None = None) -> None:
    """Starts the clock of the whole stop: from now on no step waits past `seconds` (default
    `STOP_S`) from now."""
    global _deadline
    _deadline = min(_deadline, time.monotonic() + (STOP_S if seconds is None else seconds))


def reset() -> None:
    """No stop under way (the process serves on, or a test starts another service)."""
    global _deadline
    _deadline = math.inf


def remaining() -> float:
    """Seconds left before the whole stop's deadline (infinite when no stop is under way)."""
    return max(0.0, _deadline - time.monotonic())


async def within(step: Awaitable[object], seconds: float, what: str) -> bool:
    """Awaits one step of a stop for at most `seconds` (less, if the whole stop's deadline is
    nearer); True if it finished. A step that runs out of time is cancelled and one that fails
    is logged: on the way out, neither may keep the rest from happening. Cancellation of the
    caller itself goes through."""
    bound = min(seconds, remaining())
    try:
        async with asyncio.timeout(bound):
            await step
        return True
    except TimeoutError:
        log.warning(
            "stopping: %s abandoned after %.1f s (what it had not done is read again)", what, bound
        )
    except Exception as exc:
        log.warning("stopping: %s failed (%r)", what, exc)
    return False
