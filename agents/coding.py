"""Executing a coding task as an agent: write the function, run the visible examples in the
sandbox, read the failure, fix — until the examples pass or the rounds or tokens run out.

The hidden checks never reach an agent; only the examples printed in the task do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agents import prompts
from agents.llm import LLM
from agents.sandbox import Limits, run_python_async
from schemas.events import TaskPosted, Usage

FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)


def extract_code(text: str) -> str:
    """The first fenced code block, else an unterminated one, else the whole answer."""
    if match := FENCE.search(text):
        return match.group(1).strip("\n")
    if "```" in text:
        return text.split("```", 1)[1].removeprefix("python").strip("\n")
    return text.strip("\n")


def program(task: TaskPosted, code: str) -> str:
    """A runnable module: the model's function with the prompt's imports, or prompt + body."""
    entry = task.inputs.entry_point
    if re.search(rf"^\s*def {re.escape(entry)}\s*\(", code, re.M):
        imports = [
            line for line in task.prompt.splitlines() if re.match(r"\s*(import|from)\s", line)
        ]
        return "\n".join([*imports, code])
    return task.prompt + code


def with_examples(source: str, examples: list[str]) -> str:
    return source + "\n\n" + "\n".join(examples) + "\n"


@dataclass(frozen=True)
class Execution:
    output: str  # the final program
    usage: Usage
    rounds: int
    error: str | None  # why the examples still fail, if they do


async def execute(
    llm: LLM,
    task: TaskPosted,
    plan: str,
    price: float,
    *,
    max_rounds: int = 3,
    max_tokens: int = 512,
    token_budget: int = 4000,
    limits: Limits | None = None,
) -> Execution:
    limits = limits or Limits()
    usage = Usage()
    messages = prompts.solve(task, plan)
    source, failure = "", "no attempt made"
    for round_ in range(1, max_rounds + 1):
        completion = await llm.complete(messages, max_tokens=max_tokens, top_logprobs=0)
        usage += completion.usage(price)
        code = extract_code(completion.text)
        source = program(task, code)
        result = await run_python_async(with_examples(source, task.inputs.examples), limits)
        if result.ok:
            return Execution(source, usage, round_, None)
        failure = result.summary(timed=False)
        if usage.total_tokens >= token_budget:
            break
        messages = prompts.fix(task, plan, code, failure)
    return Execution(source, usage, round_, failure)
