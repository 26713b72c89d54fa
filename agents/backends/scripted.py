"""A scripted LLM: deterministic answers with made-up log-probabilities, for tests and load
tests only. It recognises which prompt it got (plan, score, code, a search step) and answers in
kind, so an `LLMAgent` runs every job without a model; `canned` replies drive a search task's
tool loop step by step."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

from agents import prompts
from agents.llm import Completion, GeneratedToken, Message, TokenChoice

Reply = Callable[[Sequence[Message]], str]


def default_reply(messages: Sequence[Message]) -> str:
    system = messages[0]["content"]
    if system in (prompts.JUROR, prompts.SEARCH_JUROR):
        return "4"
    if system in prompts.SEARCHERS.values():
        return _search_step(messages)
    if messages[-1]["role"] == "assistant":  # the code is begun: continue with the body
        return "    return None\n"
    if system in (prompts.CODER, prompts.PROGRAMMER):
        return "```python\ndef scripted():\n    return None\n```"
    return "1. Read the task.\n2. Handle the edge cases.\n3. Return the result."


def _search_step(messages: Sequence[Message]) -> str:
    """Search once, then answer (a begun action is continued)."""
    if messages[-1]["role"] == "assistant":
        return (
            "scripted query"
            if messages[-1]["content"] == prompts.SEARCH_BEGUN
            else "scripted answer"
        )
    return "answer: scripted answer"


def canned(replies: Sequence[str], then: Reply = default_reply) -> Reply:
    """Replies in order, one per call, whatever the prompt; `then` once they are used up."""
    left = list(replies)

    def reply(messages: Sequence[Message]) -> str:
        return left.pop(0) if left else then(messages)

    return reply


class ScriptedLLM:
    def __init__(self, model: str = "scripted", reply: Reply = default_reply) -> None:
        self.model = model
        self.reply = reply
        self.calls: list[Sequence[Message]] = []

    async def complete(
        self, messages: Sequence[Message], *, max_tokens: int, top_logprobs: int = 5
    ) -> Completion:
        self.calls.append(messages)
        words = self.reply(messages).split(" ")[:max_tokens]
        tokens = tuple(self._token(w if i == 0 else " " + w) for i, w in enumerate(words))
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return Completion(" ".join(words), tokens, prompt_tokens, len(tokens))

    @staticmethod
    def _token(text: str) -> GeneratedToken:
        """A token whose probability is fixed by its text, with one alternative beside it."""
        p = 0.5 + (hashlib.sha256(text.encode()).digest()[0] / 255) * 0.45
        top = (TokenChoice(text, math.log(p)), TokenChoice("<other>", math.log(1 - p)))
        return GeneratedToken(text, math.log(p), top)
