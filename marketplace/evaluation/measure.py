"""`sale models measure`: what each local model tier does alone, and what the jury costs.

Per tier, on HumanEval problems: the bid (plan tokens, seconds, mean entropy) and whether the
tier passes the problem when it executes alone (its own plan, the agent's write-run-fix loop on
the visible examples, then the hidden tests in the sandbox). Then the two ways to run a jury on
the same plans — one prompt per plan sharing the task prefix, or one prompt for all plans —
with tokens and seconds. Progress is printed per problem; results are appended to a JSONL file
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from statistics import fmean, median

from agents import coding, prompts
from agents.agent import JURY_TOP_K, LLMAgent
from agents.backends import build
from agents.install import MODELS
from agents.llm import LLM, read_score, read_scores
from marketplace.evaluation.datasets import humaneval
from marketplace.shared.config import AgentConfig
from marketplace.shared.sandbox import Limits, run_python_async
from schemas.events import TaskPosted

PRICE = 1.0  # per million tokens: only token counts matter here


def tier_config(tier: str) -> AgentConfig:
    return AgentConfig(
        id=f"tier-{tier}",
        backend="llama_cpp",
        tier=tier,
        model=MODELS[tier].name,
        input_price=PRICE,
        output_price=PRICE,
    )


async def measure_problem(agent: LLMAgent, posted: TaskPosted, tests: str) -> dict:
    start = time.monotonic()
    [bid] = await agent.respond(posted)
    bid_s = time.monotonic() - start
    done = await coding.execute(agent.llm, posted, bid.plan, agent.config.price)
    verdict = await run_python_async(f"{done.output}\n\n{tests}", Limits(wall_s=30))
    return {
        "task_id": posted.task_id,
        "plan_tokens": bid.plan_tokens,
        "bid_s": bid_s,
        "entropy": bid.entropy,
        "exec_tokens": done.usage.total_tokens,
        "plan": bid.plan,
        "examples_pass": done.error is None,
        "passed": verdict.ok,
    }


async def measure_tier(tier: str, start: int, stop: int, results: Path) -> list[dict]:
    done = (
        [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    )
    seen = {(r["tier"], r["task_id"]) for r in done}
    agent = LLMAgent(tier_config(tier), build(tier_config(tier)))
    for i, (posted, checks) in enumerate(humaneval(start, stop), start=1):
        if (tier, posted.task_id) in seen:
            continue
        row = {"tier": tier, **await measure_problem(agent, posted, checks.checks.tests)}
        with results.open("a") as out:
            out.write(json.dumps(row) + "\n")
        done.append(row)
        print(
            f"  {tier} {i}/{stop - start} {posted.task_id}: plan {row['plan_tokens']} tokens "
            f"in {row['bid_s']:.1f}s, {'pass' if row['passed'] else 'fail'}",
            flush=True,
        )
    return [r for r in done if r["tier"] == tier]


async def jury_modes(llm: LLM, task: TaskPosted, plans: list[str]) -> dict:
    """Tokens and seconds of one juror scoring `plans` one by one (shared prefix) and at once."""
    start = time.monotonic()
    per_plan_tokens, per_plan_scores = 0, []
    for plan in plans:
        completion = await llm.complete(
            prompts.judge(task, plan), max_tokens=2, top_logprobs=JURY_TOP_K
        )
        per_plan_tokens += completion.prompt_tokens + completion.completion_tokens
        per_plan_scores.append(read_score(completion))
    per_plan_s = time.monotonic() - start
    start = time.monotonic()
    together = await llm.complete(
        prompts.judge_all(task, plans), max_tokens=8 * len(plans), top_logprobs=JURY_TOP_K
    )
    return {
        "per_plan_tokens": per_plan_tokens,
        "per_plan_s": per_plan_s,
        "per_plan_read": sum(s is not None for s in per_plan_scores),
        "together_tokens": together.prompt_tokens + together.completion_tokens,
        "together_s": time.monotonic() - start,
        "together_read": sum(s is not None for s in read_scores(together, len(plans))),
    }


def summarize(rows: list[dict]) -> str:
    return (
        f"{len(rows):>3} problems  plan tokens median {median(r['plan_tokens'] for r in rows):5.0f}"
        f"  bid s median {median(r['bid_s'] for r in rows):5.1f}"
        f"  entropy mean {fmean(r['entropy'] for r in rows):5.2f}"
        f"  passed {sum(r['passed'] for r in rows):>3}/{len(rows)}"
    )


async def main(tiers: list[str], start: int, stop: int, results: Path) -> None:
    for tier in tiers:
        print(f"tier {tier}: HumanEval {start}:{stop}", flush=True)
        rows = await measure_tier(tier, start, stop, results)
        print(f"tier {tier}: {summarize(rows)}", flush=True)
    tier = tiers[0]
    agent = LLMAgent(tier_config(tier), build(tier_config(tier)))
    posted, _ = humaneval(start, start + 1)[0]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    plans = [r["plan"] for r in rows if r["task_id"] == posted.task_id][:3]
    modes = await jury_modes(agent.llm, posted, plans)
    print(
        f"jury on tier {tier}, {len(plans)} plans of {posted.task_id}: per plan (shared "
        f"prefix) {modes['per_plan_tokens']} tokens {modes['per_plan_s']:.1f}s, "
        f"{modes['per_plan_read']} scores read; one prompt {modes['together_tokens']} tokens "
        f"{modes['together_s']:.1f}s, {modes['together_read']} scores read",
        flush=True,
    )


def run(tiers: list[str], problems: str, results: Path) -> int:
    start, stop = (int(x) for x in problems.split(":"))
    asyncio.run(main(tiers, start, stop, results))
    return 0
