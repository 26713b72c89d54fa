"""`sale models calibrate`: each local tier's prices, from the compute its tokens take here.

A price per million tokens should mean something physical on this machine, so it is measured,
per direction as model price lists quote it: reading a prompt token (prefill, batched) costs far
less than writing one (decode, one forward pass per token), and a prompt prefix the model still
holds evaluated costs almost nothing. Each tier, with one thread, reads and writes on a few
development tasks (MBPP 100–105: never the evaluation split, nor MBPP 200 and above) in three
kinds of call — a fresh prompt read with one token written, the same prompt again (held), and a
fresh prompt with a long answer — and the CPU-seconds of every call are split by least squares
into seconds per fresh prompt token, per held prompt token and per generated token. With these
prices a task's cost is an estimate, in CPU-seconds, of the compute it took.
"""

from __future__ import annotations

import asyncio
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from agents import prompts
from agents.backends import build
from agents.llm import Completion
from marketplace.evaluation.datasets import mbpp
from marketplace.evaluation.measure import tier_config

TASKS = (100, 106)
WRITE_TOKENS = 256


async def calibrate_tier(tier: str) -> dict:
    llm = build(tier_config(tier))
    calls: list[Completion] = []
    for task, _ in mbpp(*TASKS):
        read = prompts.solve(task, "", "complete")
        calls.append(await llm.complete(read, max_tokens=1, top_logprobs=0))
        calls.append(await llm.complete(read, max_tokens=1, top_logprobs=0))  # held
        write = prompts.bid(task)
        calls.append(await llm.complete(write, max_tokens=WRITE_TOKENS, top_logprobs=0))
    per_token = split_seconds(calls)
    return {
        "tier": tier,
        "model": llm.model,
        "calls": len(calls),
        "cpu_seconds": round(sum(c.seconds for c in calls), 3),
        **{name: round(s * 1_000_000, 1) for name, s in per_token.items()},
    }


def split_seconds(calls: list[Completion]) -> dict[str, float]:
    """Seconds per fresh prompt token, held prompt token and generated token (least squares,
    none below zero)."""
    rows = np.array(
        [[c.prompt_tokens - c.cached_tokens, c.cached_tokens, c.completion_tokens] for c in calls],
        dtype=float,
    )
    seconds = np.array([c.seconds for c in calls])
    coef = np.clip(np.linalg.lstsq(rows, seconds, rcond=None)[0], 0.0, None)
    return dict(zip(("input_price", "cached_input_price", "output_price"), coef, strict=True))


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
            f"{row['tier']}  {row['model']:<40} {row['calls']:>3} calls {row['cpu_seconds']:>7.1f} "
            f"CPU-s  input_price = {row['input_price']}  cached_input_price = "
            f"{row['cached_input_price']}  output_price = {row['output_price']}"
        )
    print(f"written to {out}")
    return 0
