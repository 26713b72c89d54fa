"""Submit coding tasks with their hidden checks through the Python client and wait for the
verifier's verdict: HumanEval problems 10-12, auctioned among the running agents (each run
under fresh task ids: an id is a task's for good).

The config, and through it the running `sale up`, is found as `sale` finds it: --config, else
$SALE_CONFIG, else the nearest sale.toml in the working directory or above it, else the one of
the checkout this file is in; so it runs the same from any directory."""

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

from marketplace import Client
from marketplace.evaluation.datasets import humaneval
from marketplace.shared.config import config_path, load_config
from marketplace.shared.errors import UserError

CHECKOUT = Path(__file__).resolve().parents[1] / "sale.toml"


async def main(config: Path) -> None:
    run = uuid.uuid4().hex[:6]
    tasks = [
        (
            task.model_copy(update={"task_id": f"{task.task_id}-{run}"}),
            checks.model_copy(update={"task_id": f"{task.task_id}-{run}"}),
        )
        for task, checks in humaneval(10, 13)
    ]
    async with Client(load_config(config)) as client:
        for outcome in await client.submit_many(tasks, concurrency=3):
            print(
                f"{outcome.task_id}: {outcome.status} by {outcome.winner_agent_id}, "
                f"cost {outcome.cost:.2f}"
            )


if __name__ == "__main__":
    flags = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    flags.add_argument("--config", help="the stack's sale.toml (default: found as sale finds it)")
    args = flags.parse_args()
    try:
        asyncio.run(main(config_path(args.config, fallback=CHECKOUT)))
    except UserError as exc:  # no config, no stack: one line, as `sale` says it
        sys.exit(f"submit_coding.py: {exc}")
