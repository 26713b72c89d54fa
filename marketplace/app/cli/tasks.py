"""Tasks into the marketplace: `sale publish` (task sets or a JSONL file), `sale submit` and
`sale result` (one task and its answer, through the client), and `sale run` (the main job: a
stack of its own, a set of tasks through real auctions, a report)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from marketplace.app.cli import wiring
from marketplace.app.cli.arguments import (
    DEFAULT_TASKS,
    INTERRUPTED_EXIT,
    RUN_DIR,
    Commands,
    add_old_task_flags,
    add_task_sets,
    task_sets,
)
from marketplace.shared.config import Config


def add_publish(commands: Commands) -> None:
    post = commands.add_parser("publish", help="post tasks from a dataset or a JSONL file")
    source = post.add_mutually_exclusive_group(required=True)
    add_task_sets(source, "--tasks", "dataset problems, e.g. humaneval:0:10 or mbpp:0:5")
    source.add_argument("--jsonl", help="one task per line (see marketplace/app/publish.py)")
    add_old_task_flags(post, source)
    post.set_defaults(run=run_publish)


def run_publish(config: Config, args: argparse.Namespace) -> int:
    from marketplace.app import publish
    from marketplace.evaluation.task_sets import parse_task_sets

    if args.jsonl:
        with open(args.jsonl, "rb") as lines:
            postings, bad = publish.parse_jsonl(lines, config.broker.max_record_bytes)
    else:
        postings, bad = parse_task_sets(task_sets(args)), []
    wiring.secure(config)
    for message in bad:
        print(f"sale publish: {args.jsonl}: {message}", file=sys.stderr)
    asyncio.run(publish.publish(wiring.bus(config, "client"), postings))
    print(f"posted {len(postings)} tasks, {len(bad)} bad lines")
    return 1 if bad else 0


def add_submit(commands: Commands) -> None:
    """`sale submit` (the front door's, marketplace/app/submit.py)."""
    sub = commands.add_parser("submit", help="post one task; with --wait, print its answer")
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", metavar="TEXT", help="a general request, answered as text")
    source.add_argument(
        "--file", metavar="FILE", help="a task as one JSON object (a `sale publish --jsonl` line)"
    )
    sub.add_argument("--kind", choices=["general", "coding", "search"], help="the task's kind")
    sub.add_argument("--tenant", help="whose task it is (default: default)")
    sub.add_argument("--budget", type=float, help="the most the task may spend, in price units")
    sub.add_argument("--id", help="the task id (default: a fresh one)")
    sub.add_argument(
        "--max-tokens", type=int, help="a cap on the answer's tokens (default: each agent's own)"
    )
    sub.add_argument("--wait", action="store_true", help="wait for the answer and print it")
    sub.add_argument("--timeout", type=float, default=300.0, help="--wait: seconds (300)")
    sub.add_argument("--json", action="store_true", help="print the outcome as JSON")
    sub.set_defaults(run=run_submit)


def run_submit(config: Config, args: argparse.Namespace) -> int:
    """`sale submit`: one task from flags or a file; with --wait, its answer."""
    from marketplace.app import submit
    from marketplace.client import InvalidTask

    sending = None
    try:
        posting = submit.posting_of(
            config,
            args.prompt,
            args.file,
            args.kind,
            args.tenant,
            args.budget,
            args.id,
            args.max_tokens,
        )
        wiring.secure(config)
        sending = submit.Sending(posting.task.task_id)
        run = submit.submit(config, posting, args.wait, args.timeout, args.json, sending)
        return asyncio.run(run)
    except InvalidTask as exc:  # the client's word for a task it cannot post: a bad request
        raise submit.BadRequest(str(exc)) from None
    except KeyboardInterrupt:  # Ctrl-C while waiting: the task goes on; say how to follow it
        if sending is None:
            raise
        print(f"sale submit: {submit.interrupted(sending)}", file=sys.stderr)
        return INTERRUPTED_EXIT


def add_result(commands: Commands) -> None:
    look = commands.add_parser("result", help="print what became of a task, from the log")
    look.add_argument("task_id", metavar="TASK_ID", help="the id the task was posted with")
    look.add_argument("--json", action="store_true", help="print the outcome as JSON")
    look.set_defaults(run=run_result)


def run_result(config: Config, args: argparse.Namespace) -> int:
    """`sale result TASK_ID`: what the log says became of the task."""
    from marketplace.app import submit

    wiring.secure(config)
    return asyncio.run(submit.look_up(config, args.task_id, args.json))


def add_run(commands: Commands) -> None:
    run = commands.add_parser(
        "run", help="the main job: the stack, a set of tasks through real auctions, a report"
    )
    add_task_sets(run, "--tasks", f"dataset problems, in order (default: {DEFAULT_TASKS})")
    add_old_task_flags(run, run)
    run.add_argument(
        "--run-dir",
        default=RUN_DIR,
        help="where logs and keys go (default: .sale beside the config)",
    )
    run.set_defaults(run=run_job)


def run_job(config: Config, args: argparse.Namespace) -> int:
    from marketplace.app import job
    from marketplace.evaluation.task_sets import parse_task_sets

    postings = parse_task_sets(task_sets(args))
    return asyncio.run(job.run_job(config, args.config_path, postings, Path(args.run_dir)))
