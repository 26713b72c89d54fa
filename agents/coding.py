"""Executing a coding task as an agent: write the function, run the visible examples in the
sandbox, read the failure, fix — until the examples pass or the rounds or tokens run out.

The hidden checks never reach an agent; only the examples printed in the task do.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agents import prompts
from agents.llm import LLM
from marketplace.shared.config import ExecutorStyle
from marketplace.shared.sandbox import Limits, RunResult, run_python_async
from schemas.events import Price, TaskPosted, Usage

Sandbox = Callable[[str, Limits], Awaitable[RunResult]]  # runs a program with its examples
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
class Attempt:
    """One write or fix: the program it made, what its call spent, and whether the visible
    examples pass (`error` None) or why not."""

    source: str
    usage: Usage
    error: str | None


@dataclass(frozen=True)
class Execution:
    attempts: tuple[Attempt, ...]

    @property
    def output(self) -> str:
        """The final program."""
        return self.attempts[-1].source

    @property
    def error(self) -> str | None:
        """Why the final program still fails the visible examples, if it does."""
        return self.attempts[-1].error

    @property
    def usage(self) -> Usage:
        return sum((a.usage for a in self.attempts), Usage())

    @property
    def rounds(self) -> int:
        return len(self.attempts)


async def execute(
    llm: LLM,
    task: TaskPosted,
    plan: str,
    price: Price,
    *,
    style: ExecutorStyle = "continue",
    max_rounds: int = 1,
    max_tokens: int = 512,
    token_budget: int = 4000,
    feedback: Attempt | None = None,
    limits: Limits | None = None,
    sandbox: Sandbox = run_python_async,
) -> Execution:
    """Write the function (or, given `feedback` — another agent's failed attempt — fix that),
    run the visible examples in `sandbox`, and fix on failure, for up to `max_rounds` calls."""
    limits = limits or Limits()
    if feedback is not None and feedback.error is not None:
        messages = prompts.fix(task, plan, feedback.source, feedback.error, style)
    else:
        messages = prompts.solve(task, plan, style)
    attempts: list[Attempt] = []
    for _ in range(max_rounds):
        completion = await llm.complete(messages, max_tokens=max_tokens, top_logprobs=0)
        code = extract_code(completion.text)
        source = program(task, code)
        result = await sandbox(with_examples(source, task.inputs.examples), limits)
        error = None if result.ok else result.summary(timed=False)
        attempts.append(Attempt(source, completion.usage(price), error))
        spent = sum(a.usage.total_tokens for a in attempts)
        if error is None or spent >= token_budget:
            break
        messages = prompts.fix(task, plan, source, error, style)
    return Execution(tuple(attempts))
