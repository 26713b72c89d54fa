"""The real corpus and the real questions: the offline Wikipedia corpus installs (fetched once
into the default cache, like the S model), its index finds a known article, and every FanOutQA
question the filter keeps has its gold answer in its evidence articles' text."""

from __future__ import annotations

import pytest

from agents.tools.search import SearchTool, load_tool
from marketplace.core.grading import normalize
from marketplace.evaluation import fanoutqa
from marketplace.evaluation.task_sets import from_dataset, parse_spec


@pytest.fixture(scope="module")
def wiki() -> SearchTool:
    return load_tool("wiki")


def test_the_wiki_corpus_loads_and_finds_paris(wiki: SearchTool) -> None:
    assert wiki.document_count == 10_033
    [best, *_] = wiki.search("Paris", k=3)
    assert best.title == "Paris"
    assert "capital" in best.passage and best.passage in wiki.open("Paris")
    assert wiki.open("eiffel tower") == wiki.open("Eiffel Tower") is not None


def test_every_kept_question_is_answered_by_its_evidence(wiki: SearchTool) -> None:
    kept, counts = fanoutqa.questions()
    assert counts["questions in the dev set"] == 310
    assert kept and len({q.id for q in kept}) == len(kept)
    for question in kept:
        text = normalize(" ".join(wiki.open(title) for title in question.evidence))
        assert any(f" {normalize(a)} " in f" {text} " for a in question.answers), question
    dev, held_out = fanoutqa.chosen("dev"), fanoutqa.chosen("eval")
    assert dev and held_out and len(dev) + len(held_out) == len(kept)


def test_the_eval_split_is_a_task_set_of_search_tasks() -> None:
    name, start, stop = parse_spec("fanoutqa-eval:0:2")
    postings = from_dataset(name, start, stop)
    assert [p.task.kind for p in postings] == ["search", "search"]
    assert all(p.task.task_id.startswith("FanOutQA-") for p in postings)
