"""Task sets as the benchmark names them, `DATASET:START:STOP` (`humaneval:0:164`), as postings.

Every command that takes tasks takes them this way (`--tasks`, `--train`, `--test`, `--dev`),
and a malformed or out-of-range set is refused before anything starts, naming what is wrong.

Coding: `humaneval`, `mbpp` (problems by index). Deep search: `fanoutqa` (the FanOutQA questions
the wiki corpus answers, marketplace.evaluation.fanoutqa, in their fixed order), `fanoutqa-dev`
(those
of the development split, for choosing prompts) and `fanoutqa-eval` (the evaluation split, never
tuned on); their sizes are what the filter keeps, so checking a range loads the questions (and
fetches the dataset and the corpus on first use)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # imported where used: `sale`'s flags name the sets without loading them
    from marketplace.evaluation import fanoutqa
    from marketplace.shared.posting import Posting

SIZES = {"humaneval": 164, "mbpp": 397}  # problems in each coding dataset
ID_PREFIX = {"humaneval": "HumanEval", "mbpp": "MBPP"}  # task ids are PREFIX-INDEX
SEARCH_SETS: dict[str, fanoutqa.Split | None] = {
    "fanoutqa": None,  # every kept question
    "fanoutqa-dev": "dev",
    "fanoutqa-eval": "eval",
}  # task ids are the questions' own: FanOutQA-<the dataset's id>
DATASETS = (*SIZES, *SEARCH_SETS)
FORMS = "DATASET:START:STOP, problems START to STOP-1 (humaneval:0:10)"


def known() -> str:
    """The task sets every task-set flag's help names: `humaneval (164), mbpp (397), …`."""
    sizes = [f"{name} ({SIZES[name]})" if name in SIZES else name for name in DATASETS]
    return f"{FORMS}; DATASET one of {', '.join(sizes)}"


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
    if name not in DATASETS:
        raise ValueError(
            f"task set {spec!r}: unknown dataset {name!r} (one of: {', '.join(DATASETS)})"
        )
    size = SIZES[name] if name in SIZES else len(_questions(name, spec))
    return TaskSet(name, *parse_range(f"{start}:{stop}", size, f"task set {spec!r}"))


def _questions(name: str, spec: str | None = None) -> list[fanoutqa.Question]:
    """The kept questions of a search set; ValueError if they cannot be loaded (no registry)."""
    from marketplace.evaluation import fanoutqa

    try:
        return fanoutqa.chosen(SEARCH_SETS[name])
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"task set {spec or name!r}: cannot load the questions: {exc}") from None


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
    return spec.count(":") == 2 and spec.split(":")[0] in DATASETS


def task_ids(spec: str) -> list[str]:
    """The ids the set's tasks are posted under, without loading the dataset."""
    name, start, stop = parse_spec(spec)
    if name in SEARCH_SETS:
        return [q.task_id for q in _questions(name)[start:stop]]
    return [f"{ID_PREFIX[name]}-{i}" for i in range(start, stop)]


def from_dataset(name: str, start: int, stop: int) -> list[Posting]:
    from marketplace.evaluation import fanoutqa
    from marketplace.evaluation.datasets import humaneval, mbpp
    from marketplace.shared.posting import Posting

    if name in SEARCH_SETS:
        return [Posting(*fanoutqa.task(q)) for q in _questions(name)[start:stop]]
    datasets = {"humaneval": humaneval, "mbpp": mbpp}
    if name not in datasets:
        raise ValueError(f"unknown dataset {name!r} (one of: {', '.join(DATASETS)})")
    return [Posting(task, checks) for task, checks in datasets[name](start, stop)]


def parse_task_sets(specs: Sequence[str]) -> list[Posting]:
    """`humaneval:0:164 mbpp:0:100` → the postings, in that order."""
    postings = []
    for spec in specs:
        postings += from_dataset(*parse_spec(spec))
    return postings
