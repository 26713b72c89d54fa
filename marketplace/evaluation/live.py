"""`sale bench live`: an auction mechanism through the live marketplace, for one variant and
one task order.

Each run is the main job (`marketplace.app.job`) on the evaluation tasks with the fitted weights,
in a database of its own (the run's log, hence its memory, starts empty), while the agents
answer from the shared completion cache: drafts, round-0 bids and reviews are the matrix's, so
a run only computes what the live flow adds (the paper's refinement), and that is kept for the
next. An interrupted run resumes: tasks whose outcome is in the run's log are not posted again.

Variants: `lean` (the lean auction: its replay over the matrix must give the same decisions);
`full` (the paper's SALE with refinement); `no-memory` (the paper's, refinement with no
retrieved examples, `memory_k = 0`). Orders: 0 is the dataset's order; order k > 0 shuffles it
with seed k.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import asyncpg

from marketplace.evaluation.matrix import fingerprint
from marketplace.shared.config import Config, to_toml
from marketplace.shared.database import with_database
from marketplace.shared.posting import Posting

T = TypeVar("T")
VARIANTS = ("lean", "full", "no-memory")
WINDOW_S = 900.0  # refinement and re-judging on two shared cores take minutes, not seconds
# Consumers long-poll the broker this long: a run's hops wait for models anyway, and with the
# default 50 ms a few idle stacks side by side spend a core on fetching nothing.
FETCH_WAIT_MS = 1_000


def run_name(matrix: str, variant: str, order: int) -> str:
    """The run's database: one per matrix (agents' settings), variant and order."""
    return f"sale_live_{matrix}_{variant.replace('-', '_')}_{order}"


def ordered(postings: Sequence[T], order: int) -> list[T]:
    """Order 0 is the given order; order k shuffles it with seed k."""
    shuffled = list(postings)
    if order:
        random.Random(order).shuffle(shuffled)
    return shuffled


def live_config(config: Config, variant: str, server_url: str, cache_url: str) -> Config:
    """The run's config: its own database, cached agents, the variant's memory, no monitor,
    patient consumers."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (one of: {', '.join(VARIANTS)})")
    auction = config.auction.model_copy(
        update={
            "mechanism": "lean" if variant == "lean" else "paper",
            "bid_window_s": WINDOW_S,
            "jury_window_s": WINDOW_S,
            "refine_window_s": WINDOW_S,
            "memory_k": 0 if variant == "no-memory" else config.auction.memory_k,
            "weights_file": None,
        }
    )
    agents = [a.model_copy(update={"cache": True, "cache_url": cache_url}) for a in config.agents]
    return config.model_copy(
        update={
            "broker": config.broker.model_copy(update={"fetch_max_wait_ms": FETCH_WAIT_MS}),
            "auction": auction,
            "agents": agents,
            "database": config.database.model_copy(update={"url": server_url}),
            "stack": config.stack.model_copy(
                update={"services": ["auctioneer", "recorder", "verifier"]}
            ),
        }
    )


async def ensure_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def prepare(
    config: Config, variant: str, order: int, postings: Sequence[Posting], run_dir: Path
) -> tuple[Path, Config, list[Posting]]:
    """Writes the run's config; returns it with the tasks in the run's order (the job skips
    those already done in the run's log)."""
    server = config.database.url
    url = await ensure_database(server, run_name(fingerprint(config.agents), variant, order))
    run_config = live_config(config, variant, url, cache_url=server)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "sale.toml"
    path.write_text(to_toml(run_config))
    return path, run_config, ordered(postings, order)
