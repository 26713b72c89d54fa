"""The one small protocol every LLM backend speaks, and what the auction reads from its answers.

A backend does greedy chat completion and returns, per generated token, its log-probability,
the top alternatives and — where the backend has the full distribution — the exact entropy.
From that come the plan's mean token entropy (a bid's value term) and a juror's score.

Entropy estimators, in nats:
- exact: H = −Σ p log p over the whole vocabulary, from the logits (in-process llama.cpp);
- top-k: H ≈ −Σ_{i≤k} p_i log p_i − r log r, the top-k alternatives plus the remainder mass
  r = 1 − Σ p_i counted as one lumped outcome (HTTP backends, which return top-k only). A lower
  bound of the exact value; the same estimator is used for every bid of such a backend.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Protocol

from schemas.events import Price, Usage

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class TokenChoice:
    token: str
    logprob: float


@dataclass(frozen=True)
class GeneratedToken:
    token: str
    logprob: float
    top: tuple[TokenChoice, ...] = ()
    entropy: float | None = None  # exact, when the backend saw the whole distribution


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: tuple[GeneratedToken, ...]
    prompt_tokens: int
    completion_tokens: int
    seconds: float = 0.0  # compute: CPU-seconds in process, wall-clock seconds over HTTP
    cached_tokens: int = 0  # prompt tokens the backend already held evaluated

    def usage(self, price: Price) -> Usage:
        return Usage(
            requests=1,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens,
            cost=price.cost(self.prompt_tokens, self.completion_tokens, self.cached_tokens),
            seconds=self.seconds,
        )

    def mean_entropy(self) -> float:
        """Mean per-token entropy of the generated text (0 for an empty completion)."""
        if not self.tokens:
            return 0.0
        return fmean(token_entropy(t) for t in self.tokens)


class LLMError(RuntimeError):
    """The backend could not answer: bad endpoint or key, timeout, or the model failed."""


class LLM(Protocol):
    model: str

    async def complete(
        self, messages: Sequence[Message], *, max_tokens: int, top_logprobs: int = 5
    ) -> Completion:
        """Greedy completion of a chat, with per-token log-probabilities."""
        ...


def token_entropy(token: GeneratedToken) -> float:
    if token.entropy is not None:
        return token.entropy
    return top_k_entropy([c.logprob for c in token.top] or [token.logprob])


def top_k_entropy(logprobs: Sequence[float]) -> float:
    probs = [math.exp(lp) for lp in logprobs]
    remainder = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in [*probs, remainder] if p > 0)


SCORE_DIGITS = "012345"


def expected_score(choices: Sequence[TokenChoice]) -> float | None:
    """The expected 0–5 score over the digit tokens among `choices`, renormalised.

    A small juror tends to sample the same digit for every plan while its probabilities still
    differ, so the expectation carries more information than the sampled digit.
    """
    mass = {d: 0.0 for d in SCORE_DIGITS}
    for choice in choices:
        digit = choice.token.strip()
        if digit in mass:
            mass[digit] += math.exp(choice.logprob)
    total = sum(mass.values())
    if total == 0:
        return None
    return sum(int(d) * p for d, p in mass.items()) / total


def read_scores(completion: Completion, count: int) -> list[float | None]:
    """Scores from a `Plan i: d` answer: the expectation at each digit that follows a colon."""
    scores: list[float | None] = []
    text = ""
    for token in completion.tokens:
        if _is_digit(token) and text.rstrip().endswith(":"):
            scores.append(_expectation(token))
        text += token.token
    return (scores + [None] * count)[:count]


def read_score(completion: Completion) -> float | None:
    """A juror's score, from the first answer position where a digit was likely.

    The expectation at the first digit generated; else at the first position whose top
    alternatives hold a digit (the juror wrote a word first but a score was on its mind); else a
    digit in the text. None when nothing holds a score: recorded as missing, never guessed.
    """
    for token in completion.tokens:
        if _is_digit(token):
            return _expectation(token)
    for token in completion.tokens:
        if (score := expected_score(token.top)) is not None:
            return score
    match = re.search(r"\b([0-5])\b", completion.text)
    return float(match.group(1)) if match else None


def _is_digit(token: GeneratedToken) -> bool:
    text = token.token.strip()
    return len(text) == 1 and text in SCORE_DIGITS


def _expectation(token: GeneratedToken) -> float | None:
    return expected_score(token.top or (TokenChoice(token.token, token.logprob),))
