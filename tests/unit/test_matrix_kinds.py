"""Coding and search tasks have matrices of their own, each named by what its answers depend on."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.evaluation import matrix
from marketplace.shared.config import load_config
from marketplace.shared.posting import Posting
from schemas.events import CodingInputs, SearchInputs, TaskPosted

ROOT = Path(__file__).parents[2]
ARCHIVED_CODING_MATRIX = "268f1428595b"  # the matrix archive/benchmark.jsonl.gz holds


def agents():
    return load_config(ROOT / "sale.toml", env={}, join=False).agents


def posting(task_id: str, kind: str) -> Posting:
    inputs = SearchInputs(corpus="wiki") if kind == "search" else CodingInputs(entry_point="f")
    task = TaskPosted(producer="c", task_id=task_id, kind=kind, prompt="?", inputs=inputs)
    return Posting(task, None)


def test_the_shipped_agents_keep_the_archived_coding_matrix_whatever_their_search_settings():
    shipped = agents()
    assert matrix.fingerprint(shipped) == ARCHIVED_CODING_MATRIX
    searching = [
        a.model_copy(update={"searcher": "example", "search_max_steps": 9}) for a in shipped
    ]
    assert matrix.fingerprint(searching) == ARCHIVED_CODING_MATRIX
    assert matrix.fingerprint(searching, "search") != matrix.fingerprint(shipped, "search")


def test_the_search_matrix_ignores_coding_settings_and_prices_but_not_the_loop():
    shipped = agents()
    name = matrix.fingerprint(shipped, "search")
    assert name != matrix.fingerprint(shipped)
    other_executor = [a.model_copy(update={"executor": "chat"}) for a in shipped]
    cheaper = [a.model_copy(update={"input_price": 0.5}) for a in shipped]
    budget = [a.model_copy(update={"search_token_budget": 8000}) for a in shipped]
    assert matrix.fingerprint(other_executor, "search") == name
    assert matrix.fingerprint(cheaper, "search") == name
    assert matrix.fingerprint(budget, "search") != name


def test_a_set_of_tasks_goes_in_the_matrix_of_its_kind():
    coding, search = posting("HumanEval-0", "coding"), posting("FanOutQA-x", "search")
    assert matrix.kind_of([coding]) == "coding" and matrix.kind_of([search]) == "search"
    assert matrix.name_of(agents(), [search]) == matrix.fingerprint(agents(), "search")
    with pytest.raises(ValueError, match="matrices of their own"):
        matrix.kind_of([coding, search])
