"""Task sets as the benchmark names them, `DATASET:START:STOP` (`humaneval:0:164`), as postings."""

from __future__ import annotations

from collections.abc import Sequence

from marketplace.bench.datasets import humaneval, mbpp
from marketplace.shared.posting import Posting


def from_dataset(name: str, start: int, stop: int) -> list[Posting]:
    datasets = {"humaneval": humaneval, "mbpp": mbpp}
    if name not in datasets:
        raise ValueError(f"unknown dataset {name!r} (one of: {', '.join(datasets)})")
    return [Posting(task, checks) for task, checks in datasets[name](start, stop)]


def parse_task_sets(specs: Sequence[str]) -> list[Posting]:
    """`humaneval:0:164 mbpp:0:100` → the postings, in that order."""
    postings = []
    for spec in specs:
        try:
            name, start, stop = spec.split(":")
            postings += from_dataset(name, int(start), int(stop))
        except ValueError as exc:
            raise ValueError(f"task set {spec!r}: expected DATASET:START:STOP ({exc})") from None
    return postings
