"""Submit coding tasks with their hidden checks through the Python client and wait for the
verifier's verdict: HumanEval problems 10-12, auctioned among the running agents."""

import asyncio
from pathlib import Path

from marketplace import Client
from marketplace.bench.datasets import humaneval
from marketplace.shared.config import load_config


async def main() -> None:
    async with Client(load_config(Path("sale.toml"))) as client:
        for outcome in await client.submit_many(humaneval(10, 13), concurrency=3):
            print(
                f"{outcome.task_id}: {outcome.status} by {outcome.winner_agent_id}, "
                f"cost {outcome.cost:.2f} ({outcome.detail or outcome.reason})"
            )


asyncio.run(main())
