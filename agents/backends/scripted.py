"""A scripted LLM: deterministic answers with made-up log-probabilities, for tests and load
tests only. It recognises which prompt it got (plan, score, code, a search step) and answers in
kind, so an `LLMAgent` runs every job without a model; `canned` replies drive a search task's
tool loop step by step, and a `Script` is the model of a scripted agent (`agents.scripted_agent`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from agents import prompts
from agents.llm import Completion, GeneratedToken, LLMError, Message, TokenChoice
from marketplace.shared.sandbox import Limits, RunResult

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


SCORE = re.compile(r"[0-5](\.\d+)?")  # a reply that is a score: read as the juror's expectation
PLAN = re.compile(r"scripted plan of ([^\s,]+), round (\d+)")
ENTRY = re.compile(r"^def (\w+)\(", re.M)
DRAFT = re.compile(r"# scripted draft of ([^\s,']+)")
ARTICLE = "Scripted article"  # the one article a scripted agent's search tool finds


class ScriptedLLM:
    def __init__(
        self, model: str = "scripted", reply: Reply = default_reply, entropy: float | None = None
    ) -> None:
        """`entropy`: every generated token's exact entropy (None: made up from its text). A
        reply may raise `LLMError`: the model failing, which an agent answers with silence."""
        self.model = model
        self.reply = reply
        self.entropy = entropy
        self.calls: list[Sequence[Message]] = []

    async def complete(
        self, messages: Sequence[Message], *, max_tokens: int, top_logprobs: int = 5
    ) -> Completion:
        self.calls.append(messages)
        text = self.reply(messages)
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        if SCORE.fullmatch(text):
            return Completion(text, (_score_token(float(text)),), prompt_tokens, 1)
        words = text.split(" ")[:max_tokens]
        tokens = tuple(self._token(w if i == 0 else " " + w) for i, w in enumerate(words))
        return Completion(" ".join(words), tokens, prompt_tokens, len(tokens))

    def _token(self, text: str) -> GeneratedToken:
        """A token whose probability is fixed by its text, with one alternative beside it."""
        p = 0.5 + (hashlib.sha256(text.encode()).digest()[0] / 255) * 0.45
        top = (TokenChoice(text, math.log(p)), TokenChoice("<other>", math.log(1 - p)))
        return GeneratedToken(text, math.log(p), top, self.entropy)


def _score_token(score: float) -> GeneratedToken:
    """A digit whose alternatives make `score` the expectation a juror's answer is read as
    (`agents.llm.read_score`): 4.5 is "4" and "5" at even odds."""
    low = min(int(score), 4)
    high = score - low
    top = tuple(
        TokenChoice(str(digit), math.log(p)) for digit, p in ((low, 1 - high), (low + 1, high)) if p
    )
    return GeneratedToken(top[0].token, top[0].logprob, top)


@dataclass
class Script:
    """The model of a scripted agent named `name`, a `Reply`: plans of `plan_tokens` words that
    name their author and round, jury scores by bidder, code and answers that name the agent (and
    the failing draft it was asked to fix), a search that finds `search_answer`. Where it is told
    to stay silent it fails (`LLMError`), as a real model failing does: the agent answers nothing.
    Whether a program passes the visible examples is `draft_passes` (`passes`: a sandbox)."""

    name: str
    plan_tokens: int = 100
    refined_plan_tokens: int | None = None  # None: fails when asked to refine
    scores: Mapping[str, float] = field(default_factory=dict)  # by "bidder:round", else bidder
    default_score: float = 3.0
    bids: bool = True  # False: fails when asked for a plan (but still judges)
    judges: bool = True
    draft_passes: bool = True  # its code passes the examples; its answers are not empty
    search_answer: str | None = None  # None: "scripted answer of <name>"

    def __call__(self, messages: Sequence[Message]) -> str:
        system = messages[0]["content"]
        if system in (prompts.PLANNER, prompts.SEARCH_PLANNER):
            return self.plan(messages)
        if system in (prompts.JUROR, prompts.SEARCH_JUROR):
            return self.score(messages)
        if system in prompts.SEARCHERS.values():
            return self.search_step(messages)
        if system == prompts.ASSISTANT:
            return f"scripted answer of {self.name}" if self.draft_passes else ""
        if system == prompts.PROGRAMMER:
            return self.code(messages)
        return default_reply(messages)

    def code(self, messages: Sequence[Message]) -> str:
        """A function that returns None, named as the task's (else `f`), under a comment that
        names this agent and the draft it fixes, if any."""
        entry = ENTRY.search(messages[1]["content"])
        return (
            f"# scripted draft of {self.name}{_fixing(messages)}\n"
            f"def {entry[1] if entry else 'f'}():\n    return None\n"
        )

    def plan(self, messages: Sequence[Message]) -> str:
        """A plan bid (round 0), or a refinement of its own plan, shown in the prompt (round 1)."""
        round_ = int(f"scripted plan of {self.name}, round 0" in messages[-1]["content"])
        tokens = self.refined_plan_tokens if round_ else self.plan_tokens
        if tokens is None or not self.bids:
            raise LLMError(f"{self.name} is scripted not to {'refine' if round_ else 'bid'}")
        head = f"scripted plan of {self.name}, round {round_}:".split()
        return " ".join(head + ["step"] * (tokens - len(head)))

    def score(self, messages: Sequence[Message]) -> str:
        if not self.judges:
            raise LLMError(f"{self.name} is scripted not to judge")
        found = PLAN.search(messages[-1]["content"])
        keys = (f"{found[1]}:{found[2]}", found[1]) if found else ()
        return f"{next((self.scores[k] for k in keys if k in self.scores), self.default_score):g}"

    def search_step(self, messages: Sequence[Message]) -> str:
        """Search once, open the one article found, answer (nothing, if it is to fail)."""
        if not self.draft_passes:
            return ""
        last = messages[-1]
        if last["role"] == "assistant":  # a begun action: the first search, or a forced answer
            query = last["content"] == prompts.SEARCH_BEGUN
            return f"scripted query of {self.name}" if query else self.answer()
        if last["content"].startswith("Results for"):
            return f"open: {ARTICLE}"
        return f"answer: {self.answer()}"

    async def sandbox(self, program: str, limits: Limits) -> RunResult:
        """The visible examples run, as scripted: they pass, or fail, by `draft_passes`."""
        if self.draft_passes:
            return RunResult(ok=True, exit_code=0, stdout="", stderr="", duration_s=0, limit=None)
        failure = f"AssertionError: {self.name}'s scripted draft"
        return RunResult(ok=False, exit_code=1, stdout="", stderr=failure, duration_s=0, limit=None)

    def answer(self) -> str:
        """A search task's answer: `search_answer`, else one naming this agent."""
        if self.search_answer is not None:
            return self.search_answer
        return f"scripted answer of {self.name}"


def _fixing(messages: Sequence[Message]) -> str:
    """ ", fixing <agent>'s" when the prompt shows another scripted agent's failing draft."""
    shown = next((m for c in messages if (m := DRAFT.search(c["content"]))), None)
    return f", fixing {shown[1]}'s" if shown else ""
