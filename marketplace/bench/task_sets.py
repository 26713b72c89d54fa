"""Task sets as the benchmark names them, `DATASET:START:STOP` (`humaneval:0:164`), as postings.

Every command that takes tasks takes them this way (`--tasks`, `--train`, `--test`, `--dev`),
and a malformed or out-of-range set is refused before anything starts, naming what is wrong."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NamedTuple

from marketplace.bench.datasets import humaneval, mbpp
from marketplace.shared.posting import Posting

SIZES = {"humaneval": 164, "mbpp": 397}  # problems in each dataset
ID_PREFIX = {"humaneval": "HumanEval", "mbpp": "MBPP"}  # task ids are PREFIX-INDEX


class TaskSet(NamedTuple):
    dataset: str
    start: int
    stop: int


def parse_spec(spec: str) -> TaskSet:
    """`humaneval:0:40` → TaskSet("humaneval", 0, 40); ValueError saying what is wrong."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise ValueError(f"task set {spec!r}: expected DATASET:START:STOP, e.g. humaneval:0:40")
    name, start, stop = parts
    if name not in SIZES:
        raise ValueError(
            f"task set {spec!r}: unknown dataset {name!r} (one of: {', '.join(SIZES)})"
        )
    return TaskSet(name, *parse_range(f"{start}:{stop}", SIZES[name], f"task set {spec!r}"))


def parse_range(text: str, size: int, what: str = "") -> tuple[int, int]:
    """`A:B`, problems A to B-1 of a dataset of `size`; ValueError saying what is wrong (of
    `what`, if named)."""
    of = f"{what}: " if what else ""
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"{of}expected START:STOP (whole numbers), got {text!r}") from None
    if not 0 <= start < stop <= size:
        bound = f" <= {size}" if size < sys.maxsize else ""
        raise ValueError(f"{of}need 0 <= START < STOP{bound}, got {text!r}")
    return start, stop


def is_task_set(spec: str) -> bool:
    return spec.count(":") == 2 and spec.split(":")[0] in SIZES


def task_ids(spec: str) -> list[str]:
    """The ids the set's tasks are posted under, without loading the dataset."""
    name, start, stop = parse_spec(spec)
    return [f"{ID_PREFIX[name]}-{i}" for i in range(start, stop)]


def from_dataset(name: str, start: int, stop: int) -> list[Posting]:
    datasets = {"humaneval": humaneval, "mbpp": mbpp}
    if name not in datasets:
        raise ValueError(f"unknown dataset {name!r} (one of: {', '.join(datasets)})")
    return [Posting(task, checks) for task, checks in datasets[name](start, stop)]


def parse_task_sets(specs: Sequence[str]) -> list[Posting]:
    """`humaneval:0:164 mbpp:0:100` → the postings, in that order."""
    postings = []
    for spec in specs:
        postings += from_dataset(*parse_spec(spec))
    return postings
