"""Posting tasks from JSONL: each line judged on its own, bad ones named by line and field."""

from __future__ import annotations

import json

import pytest

from marketplace.app.publish import parse_jsonl
from marketplace.evaluation.task_sets import from_dataset
from schemas.events import MAX_PROMPT, MAX_REASON

CAP = 1_000_000

GOOD = {
    "task_id": "t1",
    "kind": "coding",
    "prompt": "def f(): ...",
    "inputs": {"kind": "coding", "entry_point": "f", "examples": ["assert f() is None"]},
    "checks": {"kind": "coding", "entry_point": "f", "tests": "assert f() is None"},
}


def jsonl(*lines: object) -> list[bytes]:
    """Lines of a JSONL file as read from it: bytes. A string is a line as it is."""
    return [(x if isinstance(x, str) else json.dumps(x)).encode() + b"\n" for x in lines]


def test_good_lines_become_a_task_and_its_checks() -> None:
    search = {
        "task_id": "q1",
        "kind": "search",
        "prompt": "Who wrote Dune?",
        "inputs": {"kind": "search"},
        "budget": 0.01,
    }
    good, bad = parse_jsonl(jsonl(GOOD, "", search), CAP)
    assert bad == []
    assert [p.task.task_id for p in good] == ["t1", "q1"]
    assert good[0].checks.checks.tests == "assert f() is None"
    assert good[1].checks is None and good[1].task.budget == 0.01


def test_a_general_line_needs_no_checks_and_goes_with_the_general_ones() -> None:
    ask = {"task_id": "a1", "kind": "general", "prompt": "Name a prime."}
    [posting], bad = parse_jsonl(jsonl({**ask, "inputs": {"kind": "general"}}), CAP)
    assert bad == []
    assert posting.task.kind == "general" and posting.checks.checks.kind == "general"
    assert posting.checks.task_id == "a1" and posting.checks.producer == "client"


def test_bad_lines_are_reported_by_number_and_field_and_the_rest_still_counts() -> None:
    lines = jsonl(
        GOOD,
        "{not json",
        {**GOOD, "task_id": "t2", "kind": "poetry"},
        {**GOOD, "task_id": "t3", "budget": -1},
        [1, 2],
        {**GOOD, "task_id": "t4", "checks": {"kind": "coding"}},
        {**GOOD, "task_id": "t5"},
    )
    good, bad = parse_jsonl(lines, CAP)
    assert [p.task.task_id for p in good] == ["t1", "t5"]
    assert bad[0].startswith("line 2: not JSON")
    assert bad[1].startswith("line 3: ") and "kind" in bad[1]
    assert bad[2].startswith("line 4: ") and "budget" in bad[2]
    assert bad[3] == "line 5: not a JSON object"
    assert bad[4].startswith("line 6: ") and "entry_point" in bad[4]


def test_checks_of_another_kind_than_their_task_are_refused() -> None:
    """Issue 24: a coding task with general checks was accepted, and its outcome "answered",
    never graded."""
    general = {**GOOD, "task_id": "t2", "checks": {"kind": "general"}}
    search = {**GOOD, "task_id": "t3", "checks": {"kind": "search", "answers": ["x"]}}
    good, bad = parse_jsonl(jsonl(general, search, GOOD), CAP)
    assert [p.task.task_id for p in good] == ["t1"]
    assert bad == [
        "line 1: checks: task t2: general checks for a coding task",
        "line 2: checks: task t3: search checks for a coding task",
    ]


def test_a_line_that_is_not_utf8_is_one_bad_line_and_the_rest_still_counts() -> None:
    lines = jsonl(GOOD, {**GOOD, "task_id": "t2"})
    lines.insert(1, b'{"task_id": "caf\xe9"}\n')
    good, bad = parse_jsonl(lines, CAP)
    assert [p.task.task_id for p in good] == ["t1", "t2"]
    assert bad == ["line 2: not UTF-8: byte 17 is 0xe9"]


def test_a_line_with_a_record_over_the_cap_is_refused_whole() -> None:
    """Issue 13: a 2 MB line sent its checks, then failed on its task. Each record of a line
    is measured before any is sent, so neither half goes out alone."""
    huge_task = {
        **GOOD,
        "task_id": "big",
        "inputs": {**GOOD["inputs"], "examples": ["x" * MAX_PROMPT] * 20},
    }
    many_answers = {
        "task_id": "q",
        "kind": "search",
        "prompt": "Who?",
        "inputs": {"kind": "search"},
        "checks": {"kind": "search", "answers": ["a" * MAX_REASON] * 60},
    }
    good, bad = parse_jsonl(jsonl(huge_task, many_answers, GOOD), 200_000)
    assert [p.task.task_id for p in good] == ["t1"]
    assert bad[0].startswith("line 1: TaskPosted: 2,00") and "inputs.examples" in bad[0]
    assert "over the record cap of 200,000 bytes" in bad[0]
    assert bad[1].startswith("line 2: TaskChecks: 24") and "checks.answers" in bad[1]
    assert len(bad) == 2


def test_a_dataset_range_gives_tasks_with_checks() -> None:
    postings = from_dataset("humaneval", 0, 3)
    assert [p.task.task_id for p in postings] == ["HumanEval-0", "HumanEval-1", "HumanEval-2"]
    assert all(p.checks and p.checks.task_id == p.task.task_id for p in postings)
    with pytest.raises(ValueError, match="unknown dataset"):
        from_dataset("imagenet", 0, 1)
