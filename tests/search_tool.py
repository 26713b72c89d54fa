"""A tiny search tool over the three articles in tests/data/search, for the search agents'
tests: a document is a `.md` file titled by its name; a search ranks the documents by how many
of the query's words they hold (none: not a hit). A stand-in with the real tool's interface
(`agents.searching.Tool`), so the tests need no index."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "search"
WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Hit:
    title: str
    passage: str
    score: float


class TinyTool:
    def __init__(self, folder: Path = CORPUS) -> None:
        self.articles = {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md"))}
        self.queries: list[str] = []
        self.opened: list[str] = []

    def search(self, query: str, k: int = 5) -> list[Hit]:
        self.queries.append(query)
        words = set(WORD.findall(query.lower()))
        scored = []
        for title, text in self.articles.items():
            held = set(WORD.findall(f"{title} {text}".lower()))
            if score := len(words & held):
                scored.append(Hit(title, " ".join(text.split()), float(score)))
        return sorted(scored, key=lambda h: -h.score)[:k]

    def open(self, title: str) -> str | None:
        self.opened.append(title)
        return self.articles.get(title)
