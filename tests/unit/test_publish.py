"""Posting tasks from JSONL: each line judged on its own, bad ones named by line and field."""

from __future__ import annotations

import json

import pytest

from marketplace.app.publish import parse_jsonl
from marketplace.bench.task_sets import from_dataset

GOOD = {
    "task_id": "t1",
    "kind": "coding",
    "prompt": "def f(): ...",
    "inputs": {"kind": "coding", "entry_point": "f", "examples": ["assert f() is None"]},
    "checks": {"kind": "coding", "entry_point": "f", "tests": "assert f() is None"},
}


def test_good_lines_become_a_task_and_its_checks() -> None:
    search = {
        "task_id": "q1",
        "kind": "search",
        "prompt": "Who wrote Dune?",
        "inputs": {"kind": "search"},
        "budget": 0.01,
    }
    good, bad = parse_jsonl([json.dumps(GOOD), "", json.dumps(search)])
    assert bad == []
    assert [p.task.task_id for p in good] == ["t1", "q1"]
    assert good[0].checks.checks.tests == "assert f() is None"
    assert good[1].checks is None and good[1].task.budget == 0.01


def test_bad_lines_are_reported_by_number_and_field_and_the_rest_still_counts() -> None:
    lines = [
        json.dumps(GOOD),
        "{not json",
        json.dumps({**GOOD, "task_id": "t2", "kind": "poetry"}),
        json.dumps({**GOOD, "task_id": "t3", "budget": -1}),
        json.dumps([1, 2]),
        json.dumps({**GOOD, "task_id": "t4", "checks": {"kind": "coding"}}),
        json.dumps({**GOOD, "task_id": "t5"}),
    ]
    good, bad = parse_jsonl(lines)
    assert [p.task.task_id for p in good] == ["t1", "t5"]
    assert bad[0].startswith("line 2: not JSON")
    assert bad[1].startswith("line 3: ") and "kind" in bad[1]
    assert bad[2].startswith("line 4: ") and "budget" in bad[2]
    assert bad[3] == "line 5: not a JSON object"
    assert bad[4].startswith("line 6: ") and "entry_point" in bad[4]


def test_a_dataset_range_gives_tasks_with_checks() -> None:
    postings = from_dataset("humaneval", 0, 3)
    assert [p.task.task_id for p in postings] == ["HumanEval-0", "HumanEval-1", "HumanEval-2"]
    assert all(p.checks and p.checks.task_id == p.task.task_id for p in postings)
    with pytest.raises(ValueError, match="unknown dataset"):
        from_dataset("imagenet", 0, 1)
