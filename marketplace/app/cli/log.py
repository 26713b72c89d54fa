"""Reading the event log: `sale replay` (every decision recomputed, or history re-scored),
`sale audit` (one task's whole story) and `sale report` (markdown tables of what happened; with
--bench, the benchmark's)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from marketplace.app.cli import wiring
from marketplace.app.cli.arguments import (
    ARCHIVE,
    BesideConfig,
    Commands,
    add_task_sets,
    task_set_or_id,
)
from marketplace.shared.config import Config, load_weights

if TYPE_CHECKING:
    from marketplace.log.replay import Log


def add_replay(commands: Commands) -> None:
    replay = commands.add_parser(
        "replay",
        help="recompute every recorded auction decision, or re-score history",
        description="Reads the event log (the database `sale run` records into, or the topics "
        "with --from-kafka) and recomputes every auction decision from it (--verify, exit 1 "
        "listing what differs), or re-scores history under other weights (--weights).",
    )
    what = replay.add_mutually_exclusive_group(required=True)
    what.add_argument("--verify", action="store_true", help="exit 1 listing decisions that differ")
    what.add_argument("--weights", metavar="FILE", help="TOML with [auction.weights]' keys")
    replay.add_argument(
        "--from-kafka", action="store_true", help="read the streams from offset 0, not Postgres"
    )
    replay.set_defaults(run=run_replay)


def run_replay(config: Config, args: argparse.Namespace) -> int:
    from marketplace.log import replay

    weights = load_weights(Path(args.weights)) if args.weights else None
    with contextlib.nullcontext(config) if args.from_kafka else wiring.event_log(config) as config:
        if weights is None:
            log, found = _read_verified(config, args)
            found += replay.verify(log.events)
            print(log.report(found))
            return 1 if found or log.unreadable else 0
        log = asyncio.run(replay.read(config, args.from_kafka))
    print(replay.counterfactual(log.events, weights).render())
    for unreadable in log.unreadable:  # left out of the counterfactual: say so
        print(f"sale replay: skipped {unreadable}", file=sys.stderr)
    return 1 if log.unreadable else 0


def _read_verified(config: Config, args: argparse.Namespace) -> tuple[Log, list]:
    """The log, and the stored events their signatures do not vouch for, from one read
    (Postgres only: the log keeps the signatures); nothing to check without a keyring."""
    from marketplace.log import provenance, replay
    from marketplace.shared.keyfiles import trust_of

    if args.from_kafka or config.security.keyring is None:
        log = asyncio.run(replay.read(config, args.from_kafka))
        print("sale replay: signatures not checked (no [security].keyring)", file=sys.stderr)
        return log, []
    keyring = trust_of(config.security.model_copy(update={"key_dir": None})).keyring
    return asyncio.run(provenance.read_checked(config.database.url, keyring))


def add_audit(commands: Commands) -> None:
    audit = commands.add_parser("audit", help="print the whole story of one task")
    audit.add_argument("task_id", metavar="TASK_ID", help="e.g. HumanEval-0")
    audit.set_defaults(run=run_audit)


def run_audit(config: Config, args: argparse.Namespace) -> int:
    from marketplace.log import audit

    with wiring.event_log(config) as config:
        stored = asyncio.run(audit.load(config.database.url, args.task_id))
    if not stored:
        print(f"sale audit: no events recorded for task {args.task_id!r}", file=sys.stderr)
        return 1
    print(audit.render(stored), end="")
    return 0


def add_report(commands: Commands) -> None:
    from marketplace.evaluation.task_sets import known

    report = commands.add_parser("report", help="markdown tables of what the log says happened")
    report.add_argument(
        "--tasks",
        nargs="+",
        type=task_set_or_id,
        default=[],
        metavar="TASKS",
        help="only these: task sets or task ids (HumanEval-3); default: all. A task set is "
        f"{known()}",
    )
    report.add_argument("--bench", action="store_true", help="the benchmark's methods and plots")
    add_task_sets(
        report, "--train", "bench: the training split (default: mbpp:0:100)", ["mbpp:0:100"]
    )
    add_task_sets(
        report,
        "--test",
        "bench: the evaluation split (default: humaneval:0:164)",
        ["humaneval:0:164"],
    )
    report.add_argument(
        "--out", default=BesideConfig("docs/benchmark"), help="bench: where README.md and PNGs go"
    )
    report.add_argument("--archive", default=ARCHIVE, help="bench: loaded first if it exists")
    report.set_defaults(run=run_report)


def run_report(config: Config, args: argparse.Namespace) -> int:
    import asyncpg

    from marketplace.app.cli.evaluation import restore
    from marketplace.evaluation.report import bench_report
    from marketplace.evaluation.task_sets import is_task_set, task_ids
    from marketplace.log import summary

    ids = [i for t in args.tasks for i in (task_ids(t) if is_task_set(t) else [t])] or None

    async def report(config: Config) -> str:
        if args.bench:
            await restore(config.database.url, Path(args.archive))
            return await bench_report(config, args.train, args.test, Path(args.out))
        conn = await asyncpg.connect(config.database.url)
        try:
            prices = {a.id: a.price for a in config.agents} or None  # none: the log's own
            return await summary.run_report(conn, ids, prices=prices)
        finally:
            await conn.close()

    with wiring.event_log(config) as config:
        print(asyncio.run(report(config)))
    if args.bench:
        print(f"written to {args.out}/")
    return 0
