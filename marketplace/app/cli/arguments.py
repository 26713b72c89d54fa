"""What the command groups' flags share: the argparse types that judge a value before anything
starts (a task set, a port), the task-set flag, and the one error a flag argparse cannot judge
alone raises (`UsageError`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from marketplace.shared.errors import UserError

DEFAULT_TASKS = "humaneval:0:10"
TASK_SET = "DATASET:START:STOP"


class BesideConfig(str):
    """A flag's default path that means the same file from any working directory: it is
    relative to the config file's folder, as every path in the config is (`resolve_defaults`
    makes it so). A path the user types stays relative to where they type it."""


ARCHIVE = BesideConfig("archive/benchmark.jsonl.gz")  # the benchmark's computed work, as a file
RUN_DIR = BesideConfig(".sale")  # where `sale up` and `sale run` keep logs, keys, endpoints
INTERRUPTED_EXIT = 130  # a command stopped by Ctrl-C: 128 + SIGINT, as a shell reports it

Commands = argparse._SubParsersAction  # what each group adds its subcommands to


class UsageError(UserError, ValueError):
    """A flag that argparse could not judge alone; `main` says so in one line."""


def resolve_defaults(args: argparse.Namespace) -> None:
    """Every flag left at a `BesideConfig` default made a path in the folder of the config
    (`args.config_path`), so `sale run` in a subfolder keeps its run in the project's `.sale`."""
    folder = args.config_path.absolute().parent
    for name, value in vars(args).items():
        if isinstance(value, BesideConfig):
            setattr(args, name, str(folder / value))


def task_set(text: str) -> str:
    """The argparse type of every task-set flag: DATASET:START:STOP, judged before any start."""
    from marketplace.evaluation.task_sets import parse_spec

    return _judged(parse_spec, text)


def task_set_or_id(text: str) -> str:
    """A task set, judged as `task_set` does, or else a task id (`HumanEval-3`)."""
    from marketplace.evaluation.task_sets import is_task_set

    return task_set(text) if is_task_set(text) else text


def span(text: str) -> str:
    """START:STOP of the hidden `--range`; the dataset's size is checked with the dataset."""
    from marketplace.evaluation.task_sets import parse_range

    return _judged(lambda t: parse_range(t, sys.maxsize), text)


def _judged(parse: Callable[[str], object], text: str) -> str:
    """`text` if `parse` takes it; else argparse's one-line complaint, naming the flag."""
    try:
        parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65_535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def add_task_sets(
    where: argparse._ActionsContainer,
    flag: str,
    help: str,
    default: list[str] | str | None = None,
    nargs: str | None = "+",
) -> None:
    """A flag of task sets (`--tasks`, `--train`, ...): each judged by `task_set`, its help
    naming the form and every known set (`task_sets.known`, the one list)."""
    from marketplace.evaluation.task_sets import known

    default = list(default) if isinstance(default, list) else default  # a list of its own
    where.add_argument(
        flag,
        nargs=nargs,
        type=task_set,
        default=default,
        metavar=TASK_SET,
        help=f"{help}; each {known()}",
    )


def add_old_task_flags(command: argparse.ArgumentParser, group: argparse._ActionsContainer) -> None:
    """`--dataset NAME --range A:B`, the spelling before `--tasks`, hidden but still taken."""
    group.add_argument("--dataset", help=argparse.SUPPRESS)  # checked with --range, by name
    command.add_argument("--range", type=span, help=argparse.SUPPRESS)


def task_sets(args: argparse.Namespace) -> list[str]:
    """`--tasks`, or the task set the older `--dataset` and `--range` name (kept hidden, as
    the README once taught them)."""
    from marketplace.evaluation.task_sets import parse_spec

    if args.dataset is None and args.range is None:
        return args.tasks or [DEFAULT_TASKS]
    if args.tasks:
        raise UsageError("--tasks replaces --dataset and --range: give only --tasks")
    spec = f"{args.dataset or 'humaneval'}:{args.range or '0:10'}"
    try:
        parse_spec(spec)
    except ValueError as exc:
        raise UsageError(f"--dataset/--range: {exc}") from None
    return [spec]
