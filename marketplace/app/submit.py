"""`sale submit` and `sale result`: one task from the command line, and its answer.

`sale submit --prompt TEXT` posts a general request (a prompt answered as text);
`sale submit --file task.json` posts any task: one JSON object in the shape of a line of
`sale publish --jsonl` (the task's fields, and its hidden `checks` for a coding or search task).
`--tenant` and `--budget` set whose task it is and the most it may spend. With `--wait` the
command waits for the answer and prints it (status, winner, cost, output); without, it prints
the task id, for `sale result TASK_ID` later, which reads the answer from the log. Interrupted
(Ctrl-C) once the task is sent, it says the task's id and how to follow it: the task goes on.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from marketplace.app.publish import parse_line
from marketplace.client import Client, Outcome, Refused, SubmitTimeout, general_task, result
from marketplace.shared.config import Config
from marketplace.shared.errors import UserError
from marketplace.shared.posting import Posting
from schemas.codec import describe
from schemas.events import TaskPosted

# Exit codes: 0 an answer (passed or answered), 1 no good answer (failed, no bids, refused, late),
# 2 the request itself is wrong (bad flags, file or config).
GOOD = frozenset({"passed", "answered"})


class BadRequest(UserError, ValueError):
    """The task cannot be made from what was given; the message says why, in one line."""


@dataclass
class Sending:
    """How far `submit` got with one task: whether it may have gone out (an interrupt after
    that leaves it running in the market, without the one who sent it)."""

    task_id: str
    sent: bool = False


def interrupted(sending: Sending) -> str:
    """What `sale submit` says when interrupted: the task's id and how to follow it."""
    task_id = sending.task_id
    if not sending.sent:
        return f"interrupted before task {task_id} was sent: nothing was posted"
    return (
        f"interrupted; task {task_id} goes on without waiting: `sale result {task_id}` shows "
        f"what became of it, `sale audit {task_id}` its story"
    )


def posting_of(
    config: Config,
    prompt: str | None,
    file: str | None,
    kind: str | None,
    tenant: str | None,
    budget: float | None,
    task_id: str | None,
    max_tokens: int | None = None,
) -> Posting:
    """The task (and its checks) the flags describe."""
    if prompt is not None:
        if kind not in (None, "general"):
            raise BadRequest(
                f"a {kind} task needs its inputs and hidden checks: give them in --file "
                "(one JSON object, as a line of `sale publish --jsonl`)"
            )
        try:
            posting = Posting(general_task(prompt), None)
        except ValidationError as exc:
            raise BadRequest(describe(exc)) from None
    else:
        posting = _read_file(Path(file), config.broker.max_record_bytes)
        if kind is not None and posting.task.kind != kind:
            raise BadRequest(f"{file}: the task is a {posting.task.kind} task, not {kind}")
    changes = {"tenant": tenant, "budget": budget, "task_id": task_id, "max_tokens": max_tokens}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return posting
    checks = posting.checks
    if checks is not None and task_id:
        checks = checks.model_copy(update={"task_id": task_id})
    return Posting(_with(posting.task, **changes), checks)


def _with(task: TaskPosted, **changes: object) -> TaskPosted:
    """The task with `changes`, validated again: a bad budget or id is named."""
    try:
        return TaskPosted.model_validate({**task.model_dump(mode="json"), **changes}, strict=False)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None


def _read_file(path: Path, max_record_bytes: int) -> Posting:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadRequest(f"{path}: {exc.strerror or exc}") from None
    lines = [line for line in raw.splitlines() if line.strip()]
    try:  # one object, however it is laid out; else a JSONL file of one line
        json.loads(raw)
        line = b" ".join(raw.splitlines())
    except ValueError:
        if len(lines) != 1:
            raise BadRequest(
                f"{path}: not one JSON object ({len(lines)} lines; `sale publish --jsonl` "
                "posts many)"
            ) from None
        line = lines[0]
    try:
        return parse_line(line, max_record_bytes)
    except ValueError as exc:
        raise BadRequest(f"{path}: {exc}") from None


def render(outcome: Outcome) -> str:
    """The answer for people: what became of the task, who answered, what it cost, the answer."""
    head = f"task {outcome.task_id}: {outcome.status}"
    if outcome.status == "refused":
        head += f" ({outcome.reason}): {outcome.detail}"
    lines = [head]
    if outcome.winner_agent_id:
        model = f" ({outcome.model})" if outcome.model else ""
        how = f", {outcome.mechanism} auction" if outcome.mechanism else ""
        lines.append(f"winner: {outcome.winner_agent_id}{model}{how}")
    usage = outcome.usage
    calls = f"{usage.requests} model call{'' if usage.requests == 1 else 's'}"
    tokens = f"{usage.prompt_tokens} prompt and {usage.completion_tokens} generated tokens"
    lines.append(f"cost: {outcome.cost:.6g} ({calls}, {tokens})")
    if outcome.score is not None:
        lines.append(f"score: {outcome.score:g}")
    if outcome.detail and outcome.status != "refused":
        lines.append(f"why: {outcome.detail.splitlines()[0]}")
    if outcome.error:
        lines.append(f"error: {outcome.error.splitlines()[-1]}")
    if outcome.output is not None:
        lines += ["output:", outcome.output]
    return "\n".join(lines)


def show(outcome: Outcome, as_json: bool) -> None:
    print(outcome.model_dump_json(indent=2) if as_json else render(outcome))


def code(outcome: Outcome) -> int:
    return 0 if outcome.status in GOOD else 1


async def submit(
    config: Config,
    posting: Posting,
    wait: bool,
    timeout_s: float,
    as_json: bool,
    sending: Sending | None = None,
) -> int:
    """Posts the task; with `wait`, prints its answer (or what is known of it, and why not).
    `sending` is told when the task goes out."""
    sending = sending or Sending(posting.task.task_id)
    async with Client(config) as client:
        sending.sent = True  # from here on, it may be in the market
        if not wait:
            task_id = await client.post(posting.task, posting.checks)
            print(f"posted task {task_id}; its answer: sale result {task_id}")
            return 0
        try:
            outcome = await client.submit(posting.task, posting.checks, timeout_s)
        except (Refused, SubmitTimeout) as exc:
            print(f"sale submit: {exc}", file=sys.stderr)
            if exc.outcome is not None:
                show(exc.outcome, as_json)
            return 1
    show(outcome, as_json)
    return code(outcome)


async def look_up(config: Config, task_id: str, as_json: bool) -> int:
    """Prints what the log says of the task; 1 when it is unknown or ended without a good
    answer, 0 when it passed, was answered, or is still on its way."""
    outcome = await result(config, task_id)
    if outcome is None:
        print(f"sale result: no task {task_id!r} in the log", file=sys.stderr)
        return 1
    show(outcome, as_json)
    return 0 if outcome.status in GOOD or not outcome.final else 1
