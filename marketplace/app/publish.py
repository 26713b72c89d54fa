"""`sale publish`: a client posting tasks, from a dataset or from a JSONL file.

Each JSONL line is one task: the fields of `TaskPosted` without the envelope (`task_id`, `kind`,
`prompt`, `inputs`, and optionally `budget`, `bid_window_s`, `tenant`), plus an optional `checks`
object (the hidden half: `CodingChecks` or `SearchChecks`). Every line is validated on its own:
a bad line is reported with its number and the fields at fault, and the good ones still go out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import TypeAdapter, ValidationError

from marketplace.shared.bus import Bus
from marketplace.shared.posting import PRODUCER, Posting, publish_one
from schemas.codec import describe
from schemas.events import CodingChecks, SearchChecks, TaskChecks, TaskPosted

Checks = TypeAdapter(CodingChecks | SearchChecks)


def parse_line(line: str) -> Posting:
    """One JSONL line as a posting; ValueError naming the fields at fault."""
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    hidden = fields.pop("checks", None)
    try:
        task = TaskPosted.model_validate({**fields, "producer": PRODUCER}, strict=False)
        checks = None
        if hidden is not None:
            checks = TaskChecks(
                producer=PRODUCER,
                task_id=task.task_id,
                checks=Checks.validate_python(hidden, strict=False),
            )
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None
    return Posting(task, checks)


def parse_jsonl(lines: Iterable[str]) -> tuple[list[Posting], list[str]]:
    """The good postings, and one message per bad line (1-based line numbers)."""
    good, bad = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            good.append(parse_line(line))
        except ValueError as exc:
            bad.append(f"line {number}: {exc}")
    return good, bad


async def publish(bus: Bus, postings: list[Posting]) -> None:
    async with bus:
        for posting in postings:
            await publish_one(bus, posting)
