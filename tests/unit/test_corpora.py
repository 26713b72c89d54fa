"""`[corpora]` in the config and the `sale corpus` commands: a corpus id names "wiki" or a folder
(relative to the config file), a bad one fails naming the field, and users can install, search
and count from the command line."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from marketplace.app.cli import main
from marketplace.evaluation import fanoutqa
from marketplace.evaluation.fanoutqa import Question
from marketplace.shared.config import ConfigError, load_config, parse_config, to_toml

CORPUS = Path(__file__).parents[1] / "data" / "corpus"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sale.toml naming a copy of the shipped corpus by a relative path; the index cache in
    the test's folder."""
    shutil.copytree(CORPUS, tmp_path / "docs")
    path = tmp_path / "sale.toml"
    path.write_text('[corpora]\nnotes = "docs"\n')
    monkeypatch.setenv("SALE_CORPUS_DIR", str(tmp_path / "cache"))
    return path


def test_wiki_is_a_corpus_without_any_config() -> None:
    config = parse_config({}, env={})
    assert config.corpora == {"wiki": "wiki"}
    assert config.corpus("wiki") == "wiki"


def test_a_folder_corpus_is_relative_to_the_config_file(config_file: Path) -> None:
    config = load_config(config_file, env={})
    assert config.corpus("notes") == config_file.parent / "docs"
    assert config.corpus("wiki") == "wiki"  # still there
    assert load_config(_written(config_file, to_toml(config)), env={}) == config


def _written(next_to: Path, text: str) -> Path:
    path = next_to.with_name("again.toml")
    path.write_text(text)
    return path


def test_a_bad_corpus_fails_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sale.toml: corpora.notes: .*/missing is not a folder"):
        parse_config({"corpora": {"notes": "missing"}}, env={}, source="sale.toml", base=tmp_path)
    with pytest.raises(ConfigError, match=r"corpora.bad id"):
        parse_config({"corpora": {"bad id": "wiki"}}, env={})
    with pytest.raises(ConfigError, match=r"no corpus 'other' in \[corpora\] \(known: wiki\)"):
        parse_config({}, env={}).corpus("other")


def test_sale_corpus_install_builds_and_reports_each_index(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config_file), "corpus", "install", "notes"]) == 0
    out = capsys.readouterr().out
    assert "notes: indexing 4 documents" in out
    assert "notes: 4 documents, 7 passages, index " in out


def test_sale_corpus_search_prints_the_hits(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["corpus", "search", "notes", "Pharos wonder", "-k", "1", "--config", str(config_file)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1. Lighthouse of Alexandria  (score " in out
    assert "Seven Wonders of the Ancient World" in out
    assert main(["corpus", "search", "notes", "  ", "--config", str(config_file)]) == 0
    assert "no hits for '  ' in notes" in capsys.readouterr().out


def test_an_unknown_corpus_is_one_line(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config_file), "corpus", "search", "nope", "x"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == "sale corpus: no corpus 'nope' in [corpora] (known: wiki, notes)"


def test_sale_corpus_tasks_prints_the_filter_counts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kept = [Question("a", "Q?", ("A",), "single", ("T",), "root")]
    counts = Counter({"questions in the dev set": 3, "kept: single-hop": 1, "kept: multi-hop": 0})
    monkeypatch.setattr(fanoutqa, "questions", lambda: (kept, counts))
    monkeypatch.chdir(tmp_path)  # no sale.toml here: the defaults do
    assert main(["corpus", "tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:4] == [
        "     0  kept: multi-hop",
        "     1  kept: single-hop",
        "     3  questions in the dev set",
    ]
    split = fanoutqa.split_of("root")
    assert f"task set fanoutqa-{split}:0:1  (multi-hop 0, single-hop 1)" in lines
