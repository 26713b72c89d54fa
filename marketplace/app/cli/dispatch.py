"""`sale`'s dispatch: the parser made of every command group's subcommands, the config loaded
before a command runs, and the one place an error becomes what the user reads — a user error
(`UserError`) or a foreseen failure (no broker, no database, a missing file) one line and an
exit status, anything else a bug with its traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from marketplace.app.cli import evaluation, log, market, models, performance, security, tasks
from marketplace.app.cli.arguments import INTERRUPTED_EXIT, Commands, resolve_defaults
from marketplace.shared.config import Config, ConfigError, config_path, load_config, unset
from marketplace.shared.errors import UserError
from marketplace.shared.extras import MissingExtra

ABOUT = """`sale`: the command line of the marketplace. Each subcommand loads the config first, so a
bad file fails before anything starts; what a user can get wrong (a flag, the database, the
broker, an empty log) ends in one line on stderr and a non-zero exit, never a traceback."""

# Every command, in the order `sale --help` lists them; each group declares its own.
COMMANDS: tuple[Callable[[Commands], None], ...] = (
    market.add_up,
    market.add_topics,
    market.add_monitor,
    market.add_auctioneer,
    market.add_recorder,
    market.add_verifier,
    log.add_replay,
    security.add_keys,
    security.add_contract,
    log.add_audit,
    market.add_serve,
    performance.add_loadtest,
    performance.add_ingest_bench,
    tasks.add_publish,
    tasks.add_submit,
    tasks.add_result,
    market.add_agent,
    models.add_models,
    models.add_corpus,
    tasks.add_run,
    log.add_report,
    evaluation.add_weights,
    evaluation.add_lean,
    evaluation.add_bench,
)

# The exit status and the start of the line of each user error; "sale COMMAND: " for the rest.
USER_ERROR_EXIT = 2
PREFIXES: dict[type[UserError], str] = {ConfigError: "sale: bad config: ", MissingExtra: "sale: "}
BROKEN_PIPE_EXIT = 128 + 13  # SIGPIPE's: what `head`'s writer ends with in any shell


class Parser(argparse.ArgumentParser):
    """A parser whose complaint is one line, naming the command and where its help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="sale", description=ABOUT)
    root.add_argument(
        "--config",
        help="config file (default: $SALE_CONFIG, else the nearest sale.toml here or above)",
    )
    root.add_argument("--version", action="version", version=_version())
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    for command in _leaves(root):  # `sale run --config F` as well as `sale --config F run`
        command.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    _described(root)
    return root


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found |= action.choices
    return found


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run something: those without subcommands of their own."""
    subs = _subcommands(parser).values()
    return [leaf for sub in subs for leaf in (_leaves(sub) if _subcommands(sub) else [sub])]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sale {version('sale-marketplace')}"
    except PackageNotFoundError:
        return "sale (not installed: run from a source tree)"


def _described(parser: argparse.ArgumentParser) -> None:
    """Every command's `--help` starts by saying what it does: a command given no description
    of its own gets its one-line help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.description is None and helps.get(name):
                    sub.description = helps[name][0].upper() + helps[name][1:] + "."
                _described(sub)


def main(argv: list[str] | None = None) -> int:
    """`sale ARGS`: the command's exit status. Output into a pipe whose reader has gone
    (`sale topics | head -1`) ends the command quietly, as a Unix filter does."""
    try:
        try:
            return command(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, so that a reader gone is heard of here
    except BrokenPipeError:
        return reader_gone()


def reader_gone() -> int:
    """The standard recipe: what is left to print goes to /dev/null (so that Python's own
    flush at exit fails no more), and the status is a process's killed by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return BROKEN_PIPE_EXIT


def command(argv: list[str] | None = None) -> int:
    """Parses, loads the config and runs the command; every error becomes its one line."""
    args = parser().parse_args(argv)
    args.config_path = config_path(args.config_sub or args.config)
    resolve_defaults(args)  # default paths beside the config, from any working directory
    # aiokafka logs each failed connection; a command whose logging nobody configured says
    # it once itself (a service's configure_logging shows them all)
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    config = None
    try:
        if getattr(args, "needs_config", True):
            # `up` and `run` start a stack of their own; the rest join a running one
            config = load_config(args.config_path, join=args.command not in ("up", "run"))
        return args.run(config, args)
    except BrokenPipeError:
        raise  # the reader of our output is gone: nothing to say, and no one to say it to
    except (Exception, KeyboardInterrupt) as exc:
        if (said := told(exc, args.command, config)) is None:
            raise  # a bug: its traceback is what a report of it needs
        line, status = said
        print(line, file=sys.stderr)
        return status


def told(exc: BaseException, command: str, config: Config | None) -> tuple[str, int] | None:
    """The one line and the exit status `sale COMMAND` ends with on `exc`; None for a bug."""
    if isinstance(exc, KeyboardInterrupt):
        return f"sale {command}: interrupted", INTERRUPTED_EXIT
    if isinstance(exc, UserError):
        prefix = next((p for kind, p in PREFIXES.items() if isinstance(exc, kind)), None)
        return f"{prefix or f'sale {command}: '}{exc}", USER_ERROR_EXIT
    if (message := foreseen(exc, config)) is not None:
        return f"sale {command}: {message}", USER_ERROR_EXIT
    return None


def foreseen(exc: BaseException, config: Config | None) -> str | None:
    """The one line for a failure a user can fix that is not a `UserError` of ours (no broker,
    no database, a missing file: raised by the libraries); None for anything else, a bug."""
    import asyncpg
    from aiokafka.errors import KafkaConnectionError

    from marketplace.log.replay import NO_LOG
    from marketplace.shared.admin import BrokerUnreachable
    from marketplace.shared.database import reason

    if isinstance(exc, asyncpg.UndefinedTableError):
        return f"{NO_LOG} ({exc})"
    if isinstance(exc, (KafkaConnectionError, BrokerUnreachable)):
        if config is not None and not config.broker.bootstrap:
            return (
                f"no broker: {unset('broker', 'bootstrap')} "
                "(`sale up` starts one and prints its address)"
            )
        where = f" at {config.broker.bootstrap}" if config is not None else ""
        return f"no broker answers{where} (is `sale up` running there, and KAFKA_BOOTSTRAP right?)"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, (OSError, asyncpg.PostgresConnectionError)):
        return f"cannot connect: {reason(exc)}"
    return None
