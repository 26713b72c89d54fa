"""The task files in `examples/tasks/` are what `sale submit --file` and `sale publish --jsonl`
take: each is read by the same code those commands use, its events validate against the
published contract (docs/contract), and every kind of task is shown. A coding file's hidden
tests call `check` themselves (a `def check` never called would pass any answer)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from marketplace.app.publish import parse_jsonl
from marketplace.app.submit import posting_of
from marketplace.shared.config import Config
from marketplace.shared.posting import Posting
from schemas.events import CodingChecks, Event

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "examples" / "tasks"
CONTRACT = ROOT / "docs" / "contract" / "events"
CAP = Config().broker.max_record_bytes


def files() -> list[Path]:
    return sorted(TASKS.glob("*.json"))


def from_file(path: Path) -> Posting:
    """As `sale submit --file PATH` reads it."""
    flags = {"prompt": None, "kind": None, "tenant": None, "budget": None, "task_id": None}
    return posting_of(Config(), file=str(path), **flags)


def from_jsonl() -> list[Posting]:
    """As `sale publish --jsonl examples/tasks/tasks.jsonl` reads it: no line may be bad."""
    with (TASKS / "tasks.jsonl").open("rb") as lines:
        good, bad = parse_jsonl(lines, CAP)
    assert bad == []
    return good


def every_posting() -> list[Posting]:
    return [*(from_file(path) for path in files()), *from_jsonl()]


def conforms(event: Event) -> None:
    """`event` as its record's JSON is valid under its published JSON Schema."""
    schema = json.loads((CONTRACT / f"{event.type}.json").read_text())
    record = json.loads(event.model_dump_json())
    jsonschema.validate(record, schema, cls=jsonschema.Draft202012Validator)


def test_there_is_a_file_of_each_kind_and_a_jsonl_of_several() -> None:
    names = {path.name for path in files()}
    assert {"coding.json", "search.json", "general.json"} <= names
    kinds = ("coding", "search", "general")
    assert [from_file(TASKS / f"{kind}.json").task.kind for kind in kinds] == list(kinds)
    batch = from_jsonl()
    assert len(batch) >= 3 and {p.task.kind for p in batch} == {"coding", "search", "general"}


@pytest.mark.parametrize("path", files(), ids=lambda p: p.name)
def test_each_file_is_read_as_submit_reads_it_and_keeps_the_contract(path: Path) -> None:
    posting = from_file(path)
    for event in (posting.task, posting.checks):
        if event is not None:
            conforms(event)
    if posting.task.kind in ("coding", "search"):  # what the verifier grades them by
        assert posting.checks is not None and posting.checks.checks.kind == posting.task.kind


def test_every_line_of_the_jsonl_keeps_the_contract_and_ids_are_unique() -> None:
    postings = every_posting()
    for posting in postings:
        conforms(posting.task)
        if posting.checks is not None:
            conforms(posting.checks)
    ids = [p.task.task_id for p in postings]
    assert len(ids) == len(set(ids))


def coding_checks() -> list[tuple[str, CodingChecks]]:
    found = []
    for posting in every_posting():
        if posting.checks is not None and isinstance(posting.checks.checks, CodingChecks):
            found.append((posting.task.task_id, posting.checks.checks))
    return found


@pytest.mark.parametrize("task_id, checks", coding_checks(), ids=lambda x: str(x)[:40])
def test_hidden_tests_call_check_so_a_wrong_answer_fails(
    task_id: str, checks: CodingChecks
) -> None:
    """The verifier runs the answer's code and then `tests`, passing when it exits cleanly: a
    `def check(candidate)` that nothing calls would pass any answer. A function answering None
    must fail each file's tests."""
    wrong = f"def {checks.entry_point}(*args, **kwargs):\n    return None\n"
    with pytest.raises(AssertionError):
        exec(compile(wrong + "\n" + checks.tests, task_id, "exec"), {})


def test_a_coding_files_visible_examples_are_asserts_on_its_entry_point() -> None:
    for posting in every_posting():
        inputs = posting.task.inputs
        if inputs.kind == "coding":
            assert all(e.startswith(f"assert {inputs.entry_point}(") for e in inputs.examples)
