"""`sale models calibrate`: each local tier's price, from the compute its tokens take here.

A price per million tokens should mean something physical on this machine, so it is measured:
each tier bids and solves a few development tasks (MBPP 100–102: never the evaluation split, nor
MBPP 200 and above) with one thread, and its price is the CPU-seconds it spent per million
tokens (prompt and generated tokens together, in the mix an agent's work has). With these
prices a task's cost is an estimate, in CPU-seconds, of the compute it took.
"""

from __future__ import annotations

import asyncio
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

from agents import prompts
from agents.backends import build
from agents.measure import tier_config
from marketplace.tasks import mbpp

TASKS = (100, 103)
PLAN_TOKENS = 96
SOLVE_TOKENS = 256


async def calibrate_tier(tier: str) -> dict:
    llm = build(tier_config(tier))
    seconds, tokens = 0.0, 0
    for task, _ in mbpp(*TASKS):
        for messages, limit in (
            (prompts.bid(task), PLAN_TOKENS),
            (prompts.solve(task, ""), SOLVE_TOKENS),
        ):
            completion = await llm.complete(messages, max_tokens=limit, top_logprobs=0)
            seconds += completion.seconds
            tokens += completion.prompt_tokens + completion.completion_tokens
    return {
        "tier": tier,
        "model": llm.model,
        "tokens": tokens,
        "cpu_seconds": round(seconds, 3),
        "price_per_mtok": round(seconds / tokens * 1_000_000, 1),
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run(tiers: list[str], out: Path) -> int:
    rows = [asyncio.run(calibrate_tier(tier)) for tier in tiers]
    record = {"measured_at": datetime.now(UTC).isoformat(), "cpu": cpu_model(), "tiers": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"CPU: {record['cpu']}")
    for row in rows:
        print(
            f"{row['tier']}  {row['model']:<40} {row['tokens']:>6} tokens "
            f"{row['cpu_seconds']:>8.1f} CPU-s  price_per_mtok = {row['price_per_mtok']}"
        )
    print(f"written to {out}")
    return 0
