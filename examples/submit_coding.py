"""Submit coding tasks with their hidden checks through the Python client and wait for the
verifier's verdict: HumanEval problems 10-12, auctioned among the running agents (each run
under fresh task ids: an id is a task's for good)."""

import asyncio
import uuid
from pathlib import Path

from marketplace import Client
from marketplace.evaluation.datasets import humaneval
from marketplace.shared.config import load_config


async def main() -> None:
    run = uuid.uuid4().hex[:6]
    tasks = [
        (
            task.model_copy(update={"task_id": f"{task.task_id}-{run}"}),
            checks.model_copy(update={"task_id": f"{task.task_id}-{run}"}),
        )
        for task, checks in humaneval(10, 13)
    ]
    async with Client(load_config(Path("sale.toml"))) as client:
        for outcome in await client.submit_many(tasks, concurrency=3):
            print(
                f"{outcome.task_id}: {outcome.status} by {outcome.winner_agent_id}, "
                f"cost {outcome.cost:.2f}"
            )


asyncio.run(main())
