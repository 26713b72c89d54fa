"""Grading a search answer against the gold answers: pure functions, no I/O.

SQuAD-style: both sides are normalised (lowercase, punctuation removed, the articles "a", "an",
"the" removed, whitespace collapsed), then compared by exact match and by token F1 (the harmonic
mean of token precision and recall, tokens counted with multiplicity). With several gold answers
the best one counts. Punctuation is every Unicode punctuation character, not only ASCII, so
typographic quotes and dashes ("Dune’s", “Frank Herbert”) normalise like their ASCII forms.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, drop articles, collapse whitespace."""
    lowered = text.lower()
    no_punctuation = "".join(c for c in lowered if not unicodedata.category(c).startswith("P"))
    no_articles = _ARTICLES.sub(" ", no_punctuation)
    return " ".join(no_articles.split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize(prediction) == normalize(gold)


def token_f1(prediction: str, gold: str) -> float:
    """Token F1 of the normalised texts; when either has no tokens, 1.0 iff both have none."""
    predicted, expected = normalize(prediction).split(), normalize(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Grade:
    exact: bool  # matches some gold answer exactly, after normalisation
    f1: float  # the best token F1 over the gold answers, in [0, 1]
    best: str  # the gold answer that gave that F1 (the first, on ties)


def grade(prediction: str, answers: Iterable[str]) -> Grade:
    """The best exact match and the best F1 of `prediction` over the gold `answers`."""
    golds = list(answers)
    if not golds:
        raise ValueError("grading needs at least one gold answer")
    scores = [token_f1(prediction, gold) for gold in golds]
    best = max(range(len(golds)), key=lambda i: scores[i])
    return Grade(
        exact=any(exact_match(prediction, gold) for gold in golds),
        f1=scores[best],
        best=golds[best],
    )
