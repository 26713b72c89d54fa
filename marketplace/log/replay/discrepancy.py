"""What replay reports: a `Discrepancy`, one recorded value replay does not reproduce, and the
comparison that decides it (`same`: exact, or within a float tolerance that only absorbs
summation order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TOLERANCE = 1e-9  # floats survive JSON and jsonb exactly; this only absorbs summation order
Value = str | float | int | bool | None


@dataclass(frozen=True)
class Discrepancy:
    """One recorded value that replay does not reproduce, and what replay derived instead."""

    task_id: str
    field: str
    recorded: Value
    recomputed: Value

    def __str__(self) -> str:
        return (
            f"{self.task_id}: {self.field}: recorded {_show(self.recorded)}, "
            f"recomputed {_show(self.recomputed)}"
        )


def _show(value: Value) -> str:
    return f"{value:.12g}" if isinstance(value, float) else str(value)


def same(recorded: Value, recomputed: Value) -> bool:
    """Equal, or (numbers) equal but for summation order; a bool is never a number here."""
    if recorded == recomputed:  # nearly every value replay checks: no tolerance to work out
        return True
    numbers = (int, float)
    if isinstance(recorded, bool) or isinstance(recomputed, bool):
        return recorded == recomputed
    if isinstance(recorded, numbers) and isinstance(recomputed, numbers):
        return math.isclose(recorded, recomputed, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return recorded == recomputed


def differ(task_id: str, name: str, recorded: Value, recomputed: Value) -> list[Discrepancy]:
    """No discrepancy if the values are the `same`, else the one naming `name`."""
    return [] if same(recorded, recomputed) else [Discrepancy(task_id, name, recorded, recomputed)]
