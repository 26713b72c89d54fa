"""`sale publish`: a client posting tasks, from a dataset or from a JSONL file.

Each JSONL line is one task: the fields of `TaskPosted` without the envelope (`task_id`, `kind`,
`prompt`, `inputs`, and optionally `budget`, `bid_window_s`, `tenant`), plus an optional `checks`
object (the hidden half: `CodingChecks` or `SearchChecks`; a `general` task, whose prompt is
answered as text, needs none). Every line is judged whole before anything is sent (UTF-8, JSON,
the fields, and each record it makes against the record cap), so a line goes out entirely or not
at all: checks are never sent without their task. A bad line is reported with its number and
the fields at fault, and the good ones still go out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import TypeAdapter, ValidationError

from marketplace.shared.bus import Bus
from marketplace.shared.posting import PRODUCER, Posting, default_checks, misfit, publish_one
from schemas.codec import describe, encode
from schemas.events import CodingChecks, GeneralChecks, SearchChecks, TaskChecks, TaskPosted

Checks = TypeAdapter(CodingChecks | SearchChecks | GeneralChecks)


def parse_line(line: bytes, max_record_bytes: int) -> Posting:
    """One JSONL line as a posting whose records all fit the cap; ValueError naming the fault."""
    try:
        fields = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: byte {exc.start + 1} is {line[exc.start]:#04x}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    hidden = fields.pop("checks", None)
    try:
        task = TaskPosted.model_validate({**fields, "producer": PRODUCER}, strict=False)
        checks = default_checks(task)
        if hidden is not None:
            checks = TaskChecks(
                producer=PRODUCER,
                task_id=task.task_id,
                checks=Checks.validate_python(hidden, strict=False),
            )
    except ValidationError as exc:
        raise ValueError(describe(exc)) from None
    if (why := misfit(task, checks)) is not None:
        raise ValueError(f"checks: {why}")
    for event in (task, checks):
        if event is not None:
            encode(event, max_record_bytes)  # RecordTooLarge, a ValueError, names the field
    return Posting(task, checks)


def parse_jsonl(lines: Iterable[bytes], max_record_bytes: int) -> tuple[list[Posting], list[str]]:
    """The good postings, and one message per bad line (1-based line numbers). The lines are
    bytes, so a line that is not UTF-8 is one bad line, not the end of the file."""
    good, bad = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            good.append(parse_line(line, max_record_bytes))
        except ValueError as exc:
            bad.append(f"line {number}: {exc}")
    return good, bad


async def publish(bus: Bus, postings: list[Posting]) -> None:
    async with bus:
        for posting in postings:
            await publish_one(bus, posting)
