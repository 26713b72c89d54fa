"""Every error a user causes derives from one `UserError`, and `sale` ends each in one line on
stderr and exit status 2, never a traceback: whatever command raises it, whichever layer
defines it. And the pieces the CLI package shares are written once: the bench worker's command
line is what `sale bench worker` parses back; the comparison's retry is the evaluation's."""

from __future__ import annotations

import argparse
import asyncio
import importlib
from pathlib import Path

import pytest

from marketplace.app.cli import main, parser, security
from marketplace.app.cli.evaluation import matrix_job
from marketplace.shared.config import parse_config
from marketplace.shared.errors import UserError

# Where each user error is defined: the layer that raises it.
DEFINED = {
    "UsageError": "marketplace.app.cli.arguments",
    "BadRequest": "marketplace.app.submit",
    "ConfigError": "marketplace.shared.config",
    "LogUnavailable": "marketplace.log.replay",
    "DatabaseUnreachable": "marketplace.shared.database",
    "EmptySplit": "marketplace.evaluation.matrix",
    "MissingExtra": "marketplace.shared.extras",
    "StackRunning": "marketplace.shared.stack_lock",
}


def user_errors() -> list[type[UserError]]:
    """Every subclass of UserError once the modules defining the known ones are loaded."""
    for module in DEFINED.values():
        importlib.import_module(module)
    found, todo = [], [UserError]
    while todo:
        found += (subs := todo.pop().__subclasses__())
        todo += subs
    return found


@pytest.mark.parametrize("name", sorted(DEFINED))
def test_each_user_error_derives_from_user_error(name: str) -> None:
    error = getattr(importlib.import_module(DEFINED[name]), name)
    assert issubclass(error, UserError)


def test_no_user_error_goes_unlisted() -> None:
    assert sorted(e.__name__ for e in user_errors()) == sorted(DEFINED)


@pytest.mark.parametrize("error", user_errors(), ids=lambda e: e.__name__)
def test_sale_ends_each_user_error_in_one_line_and_status_2(
    error: type[UserError], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(config: object, args: argparse.Namespace) -> int:
        raise error("what went wrong, and what to do")

    monkeypatch.setattr(security, "run_contract", fails)  # a command that reads no config
    assert main(["contract"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("sale") and line.endswith(": what went wrong, and what to do"), line
    assert "Traceback" not in err


def test_the_bench_worker_parses_back_the_command_line_it_is_started_with() -> None:
    config = parse_config({"agents": AGENTS}, env={})
    args = parser().parse_args(["--config", "x.toml", "bench", "matrix", "--escalate", "S:L"])
    args.config_path = Path("x.toml")
    plan, worker = matrix_job(config, args, ["mbpp:0:2"], ["mbpp:0:1"])
    assert worker[1:3] == ["-m", "marketplace.app.cli"]
    parsed = parser().parse_args(worker[3:])
    assert (parsed.config, parsed.command, parsed.action) == ("x.toml", "bench", "worker")
    assert (parsed.tasks, parsed.plans) == (["mbpp:0:2"], ["mbpp:0:1"])
    assert parsed.escalate == ["S:L"]
    assert plan.escalate == (("S", "L"),)
    assert [p.task.task_id for p in plan.postings] == ["MBPP-0", "MBPP-1"]


def test_the_comparison_computes_each_missing_draft_and_reports_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from marketplace.evaluation import compare, lean_replay, matrix

    config = parse_config({"agents": AGENTS}, env={})
    plan = matrix.make_plan(config, ["mbpp:0:2"], [], [])
    missing = [lean_replay.Missing("MBPP-1", "L", "S"), lean_replay.Missing("MBPP-0", "L", "S")]
    worked: list[matrix.Plan] = []

    async def report(*_: object) -> str:
        if missing:
            raise missing.pop(0)
        return "the table"

    async def work(_: object, one: matrix.Plan) -> int:
        worked.append(one)
        return 1

    monkeypatch.setattr(compare, "bench_report", report)
    monkeypatch.setattr(matrix, "work", work)
    text = asyncio.run(compare.report_filling_gaps(config, plan, ["a"], ["b"], Path("out")))
    assert text == "the table"
    assert [[p.task.task_id for p in w.postings] for w in worked] == [["MBPP-1"], ["MBPP-0"]]
    assert all(w.escalate == (("S", "L"),) for w in worked)
    assert capsys.readouterr().out.count("computing what the lean replay needs") == 2


AGENTS = [
    {"id": i, "backend": "scripted", "model": f"scripted-{i}", "input_price": 1, "output_price": 2}
    for i in ("S", "L")
]
