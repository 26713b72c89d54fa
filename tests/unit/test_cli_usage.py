"""`sale` as a new user meets it: every command and flag explains itself, a bad flag or range is
one line naming it, and the errors a user can cause end in one line, never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from marketplace.app.cli import main, parser
from marketplace.app.cli.arguments import UsageError, task_sets
from marketplace.app.cli.dispatch import foreseen, told
from marketplace.evaluation.live import VARIANTS
from marketplace.evaluation.matrix import EmptySplit
from marketplace.evaluation.task_sets import parse_spec, task_ids
from marketplace.log.replay import LogUnavailable
from marketplace.shared.config import ConfigError, parse_config
from marketplace.shared.database import DatabaseUnreachable
from marketplace.shared.extras import MissingExtra

SALE = [sys.executable, "-m", "marketplace.app.cli"]


def commands(root: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every parser under `root`, by its full command line (`sale keys new`)."""
    found = {root.prog: root}
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= commands(sub)
    return found


def test_every_command_has_a_description_and_every_flag_a_help() -> None:
    undescribed, unexplained = [], []
    for name, command in commands(parser()).items():
        if not command.description:
            undescribed.append(name)
        for action in command._actions:
            if action.help is None and not isinstance(action, argparse._SubParsersAction):
                unexplained.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not undescribed, undescribed
    assert not unexplained, unexplained


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == "sale 0.1.0"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["publish", "--dataset", "humaneval", "--range", "5"], "expected START:STOP"),
        (["publish", "--tasks", "humaneval:0:500"], "need 0 <= START < STOP <= 164"),
        (["run", "--tasks", "mbpp:3"], "expected DATASET:START:STOP"),
        (["run", "--tasks", "imagenet:0:3"], "unknown dataset 'imagenet'"),
        (["report", "--tasks", "humaneval:5:2"], "need 0 <= START < STOP"),
        (["bench", "live", "--tasks", "humaneval:0:x"], "(whole numbers)"),
        (["weights", "fit", "--tasks", "mbpp:-1:5"], "need 0 <= START < STOP"),
        (["bench", "live", "--variant", "fancy"], "invalid choice: 'fancy'"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"sale {argv[0]}: argument ") and says in line, line


def test_the_bench_variants_are_the_live_runs_variants() -> None:
    [bench] = [c for name, c in commands(parser()).items() if name == "sale bench"]
    [variant] = [a for a in bench._actions if "--variant" in a.option_strings]
    assert tuple(variant.choices) == VARIANTS


def test_the_old_dataset_and_range_flags_still_name_a_task_set() -> None:
    def tasks(*argv: str) -> list[str]:
        return task_sets(parser().parse_args(["run", *argv]))

    assert tasks() == ["humaneval:0:10"]
    assert tasks("--tasks", "mbpp:0:5", "humaneval:3:4") == ["mbpp:0:5", "humaneval:3:4"]
    assert tasks("--dataset", "mbpp", "--range", "0:5") == ["mbpp:0:5"]
    assert tasks("--range", "2:4") == ["humaneval:2:4"]
    with pytest.raises(UsageError, match="STOP <= 164"):
        tasks("--range", "0:500")
    with pytest.raises(UsageError, match="give only --tasks"):
        tasks("--tasks", "mbpp:0:5", "--range", "0:5")
    with pytest.raises(UsageError, match=r"unknown dataset 'apps'.*fanoutqa"):
        tasks("--dataset", "apps", "--range", "0:5")


def test_a_task_set_names_the_ids_its_tasks_are_posted_under() -> None:
    from marketplace.evaluation.task_sets import from_dataset

    assert task_ids("humaneval:3:6") == [p.task.task_id for p in from_dataset("humaneval", 3, 6)]
    assert task_ids("mbpp:7:9") == ["MBPP-7", "MBPP-8"]
    assert parse_spec("mbpp:0:397") == ("mbpp", 0, 397)


def test_report_takes_task_sets_and_task_ids_alike() -> None:
    args = parser().parse_args(["report", "--tasks", "humaneval:0:2", "HumanEval-9"])
    assert args.tasks == ["humaneval:0:2", "HumanEval-9"]


CONFIG = parse_config({}, env={})


@pytest.mark.parametrize(
    ("error", "config", "says"),
    [
        (
            asyncpg.UndefinedTableError('relation "spend" does not exist'),
            CONFIG,
            "holds no event log yet: has `sale run` (or `sale up` with the recorder) recorded "
            'anything with this config? (relation "spend" does not exist)',
        ),
        (KafkaConnectionError("Unable to bootstrap"), CONFIG, "no broker: [broker].bootstrap"),
        (
            KafkaConnectionError("Unable to bootstrap"),
            parse_config({}, env={"KAFKA_BOOTSTRAP": "k:9092"}),
            "no broker answers at k:9092",
        ),
        (FileNotFoundError(2, "No such file or directory", "t.jsonl"), CONFIG, "t.jsonl: No such"),
        (ConnectionRefusedError(111, "Connection refused"), CONFIG, "cannot connect: "),
    ],
)
def test_each_foreseeable_failure_is_one_line(error: Exception, config, says: str) -> None:
    message = foreseen(error, config)
    assert message is not None and says in message
    assert "\n" not in message
    assert told(error, "publish", config) == (f"sale publish: {message}", 2)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (LogUnavailable("the database holds no event log yet"), "sale replay: the database"),
        (DatabaseUnreachable("cannot reach the database x"), "sale replay: cannot reach the"),
        (UsageError("--tasks replaces --dataset"), "sale replay: --tasks replaces --dataset"),
        (EmptySplit("the matrix m has no task of x"), "sale replay: the matrix m has no task"),
        (ConfigError("[auction].mechanism: no"), "sale: bad config: [auction].mechanism: no"),
        (MissingExtra("plots need the `bench` extra"), "sale: plots need the `bench` extra"),
    ],
)
def test_each_user_error_is_its_one_line_and_status_2(error: Exception, line: str) -> None:
    said = told(error, "replay", CONFIG)
    assert said is not None and said[0].startswith(line) and said[1] == 2


def test_an_interrupt_is_one_line_and_status_130() -> None:
    assert told(KeyboardInterrupt(), "run", None) == ("sale run: interrupted", 130)


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyError("x"), ValueError("y")])
def test_anything_else_is_a_bug_and_keeps_its_traceback(error: Exception) -> None:
    assert foreseen(error, CONFIG) is None
    assert told(error, "run", CONFIG) is None


def sale(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "sale.toml"
    config.write_text("[security]\nrequire_signatures = false\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL")}
    command = [*SALE, "--config", str(config), *argv]
    return subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_no_broker_and_an_unreachable_one_are_one_line_each(tmp_path: Path) -> None:
    for env, says in (({}, "no broker: "), ({"KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "no broker ans")):
        done = sale(tmp_path, "publish", "--tasks", "humaneval:0:1", **env)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"sale publish: {says}")


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = "postgresql://sale:secret@127.0.0.1:1/sale"
    for argv in (["report"], ["replay", "--verify"], ["audit", "HumanEval-0"]):
        done = sale(tmp_path, *argv, DATABASE_URL=url)
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            f"sale {argv[0]}: cannot reach the database postgresql://sale:***@127.0.0.1:1/sale: "
            "[Errno 111] Connect call failed ('127.0.0.1', 1)\n"
        )


def into_a_closed_pipe(argv: list[str], unbuffered: bool) -> subprocess.CompletedProcess[str]:
    """`sale ARGV | head -1` with head long gone: the pipe's reader closed before the command
    writes a byte, so its first write into it fails, every time (with head itself, whether the
    write comes before or after head's exit is a race)."""
    reader, writer = os.pipe()
    os.close(reader)
    env = {**os.environ, "PYTHONUNBUFFERED": "1" if unbuffered else ""}
    try:
        return subprocess.run(
            [*SALE, *argv], stdout=writer, stderr=subprocess.PIPE, env=env, text=True, timeout=120
        )
    finally:
        os.close(writer)


@pytest.mark.parametrize(
    ("argv", "unbuffered"),
    [
        (["models", "list"], True),  # each line written as printed: the command hears of it
        (["models", "list"], False),  # written at the end: the flush at exit hears of it
        (["--help"], False),  # printed by the parser, before any command runs
    ],
)
def test_output_into_a_pipe_whose_reader_is_gone_ends_quietly(
    argv: list[str], unbuffered: bool
) -> None:
    done = into_a_closed_pipe(argv, unbuffered)
    assert (done.returncode, done.stderr) == (141, "")  # SIGPIPE's status, nothing said


def test_every_task_set_flag_names_the_form_and_every_known_set() -> None:
    """`--tasks`, `--train`, `--test`, `--dev`, wherever they are: the help says what to type."""
    from marketplace.app.cli.arguments import task_set, task_set_or_id
    from marketplace.evaluation.task_sets import DATASETS

    flags = {
        f"{name} {action.option_strings[0]}": action.help or ""
        for name, command in commands(parser()).items()
        for action in command._actions
        if action.type in (task_set, task_set_or_id)
    }
    assert {"sale publish --tasks", "sale report --test", "sale lean --dev"} <= set(flags)
    for flag, help in flags.items():
        assert "DATASET:START:STOP" in help, flag
        assert all(name in help for name in DATASETS), f"{flag}: {help}"
