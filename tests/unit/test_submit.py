"""`sale submit` and `sale result`, their pure parts: the task the flags describe, and the
answer as a person reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketplace.app.submit import BadRequest, posting_of, render
from marketplace.log.outcomes import Outcome
from marketplace.shared.config import Config
from schemas.events import Usage

CODING = {
    "task_id": "t1",
    "kind": "coding",
    "prompt": "def f(): ...",
    "inputs": {"kind": "coding", "entry_point": "f"},
    "checks": {"kind": "coding", "entry_point": "f", "tests": "assert f() is None"},
}


def flags(**given: object) -> dict:
    return {
        "prompt": None,
        "file": None,
        "kind": None,
        "tenant": None,
        "budget": None,
        "task_id": None,
        **given,
    }


def test_a_prompt_is_a_general_request_with_its_tenant_budget_and_id() -> None:
    posting = posting_of(Config(), **flags(prompt="Name a prime.", tenant="acme", budget=2.0))
    task = posting.task
    assert (task.kind, task.prompt, task.tenant, task.budget) == (
        "general",
        "Name a prime.",
        "acme",
        2.0,
    )
    assert task.task_id.startswith("ask-") and posting.checks is None  # the client adds them
    named = posting_of(Config(), **flags(prompt="Hi", task_id="mine"))
    assert named.task.task_id == "mine"


def test_max_tokens_caps_the_answer_and_a_cap_out_of_range_is_named() -> None:
    capped = posting_of(Config(), **flags(prompt="Name a prime.", max_tokens=5))
    assert capped.task.max_tokens == 5
    assert posting_of(Config(), **flags(prompt="Hi")).task.max_tokens is None
    with pytest.raises(BadRequest, match="max_tokens"):
        posting_of(Config(), **flags(prompt="Hi", max_tokens=0))


def test_a_file_holds_any_task_as_one_object_or_one_line(tmp_path: Path) -> None:
    pretty = tmp_path / "task.json"
    pretty.write_text(json.dumps(CODING, indent=2))
    posting = posting_of(Config(), **flags(file=str(pretty), task_id="t2", tenant="acme"))
    assert (posting.task.task_id, posting.task.tenant) == ("t2", "acme")
    assert posting.checks.task_id == "t2" and posting.checks.checks.tests == "assert f() is None"
    line = tmp_path / "task.jsonl"
    line.write_text("\n" + json.dumps(CODING) + "\n")
    assert posting_of(Config(), **flags(file=str(line))).task.task_id == "t1"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"prompt": ""}, "prompt: String should have at least 1 character"),
        ({"prompt": "x", "budget": -1.0}, "budget: Input should be greater than or equal to 0"),
        ({"prompt": "x", "tenant": "a b"}, "tenant: String should match pattern"),
        ({"prompt": "x", "kind": "coding"}, "a coding task needs its inputs and hidden checks"),
        ({"file": "missing.json"}, "missing.json: No such file or directory"),
    ],
)
def test_a_bad_request_is_one_line_naming_the_field(given: dict, message: str) -> None:
    with pytest.raises(BadRequest) as bad:
        posting_of(Config(), **flags(**given))
    assert message in str(bad.value) and "\n" not in str(bad.value)


def test_a_file_of_many_tasks_or_another_kind_is_refused(tmp_path: Path) -> None:
    many = tmp_path / "tasks.jsonl"
    many.write_text(json.dumps(CODING) + "\n" + json.dumps(CODING) + "\n")
    with pytest.raises(BadRequest, match=r"not one JSON object \(2 lines; `sale publish --jsonl`"):
        posting_of(Config(), **flags(file=str(many)))
    one = tmp_path / "task.json"
    one.write_text(json.dumps(CODING))
    with pytest.raises(BadRequest, match="the task is a coding task, not general"):
        posting_of(Config(), **flags(file=str(one), kind="general"))


def test_the_answer_reads_status_winner_cost_and_output() -> None:
    usage = Usage(requests=1, prompt_tokens=100, completion_tokens=80, cost=9e-6)
    answered = Outcome(
        task_id="ask-1",
        status="answered",
        winner_agent_id="small",
        model="scripted-small",
        mechanism="lean",
        output="Two.",
        cost=9e-6,
        usage=usage,
        detail="a general task: nothing to check the answer against",
    )
    assert render(answered) == (
        "task ask-1: answered\n"
        "winner: small (scripted-small), lean auction\n"
        "cost: 9e-06 (1 model call, 100 prompt and 80 generated tokens)\n"
        "why: a general task: nothing to check the answer against\n"
        "output:\nTwo."
    )
    refused = Outcome(
        task_id="ask-2", status="refused", reason="over_budget", detail="acme: 0 left"
    )
    assert render(refused).splitlines()[0] == "task ask-2: refused (over_budget): acme: 0 left"
