"""Grading search answers: SQuAD-style normalisation, exact match and token F1."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.core.grading import exact_match, grade, normalize, token_f1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Frank Herbert", "frank herbert"),
        ("frank herbert.", "frank herbert"),
        ("  The   Frank\tHerbert\n", "frank herbert"),
        ("A tale of an apple", "tale of apple"),
        ("Theatre, anthem, another", "theatre anthem another"),  # articles only as words
        ("“Dune’s” author — Herbert!", "dunes author herbert"),  # Unicode punctuation too
        ("Herbert's", "herberts"),
        ("", ""),
        ("the a an", ""),
        ("1,965", "1965"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_exact_match_ignores_case_punctuation_articles_and_spacing() -> None:
    assert exact_match("frank herbert.", "Frank Herbert")
    assert exact_match("The Beatles", "beatles")
    assert not exact_match("Frank", "Frank Herbert")
    assert not exact_match("Frank Herbert Jr", "Frank Herbert")


def test_token_f1() -> None:
    assert token_f1("Frank Herbert", "frank herbert.") == 1.0
    assert token_f1("Frank", "Frank Herbert") == pytest.approx(2 / 3)  # p=1, r=1/2
    assert token_f1("Frank Herbert wrote it", "Frank Herbert") == pytest.approx(2 / 3)  # p=1/2
    assert token_f1("Isaac Asimov", "Frank Herbert") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after normalisation
    assert token_f1("the", "Herbert") == 0.0
    assert token_f1("", "Herbert") == 0.0


def test_token_f1_counts_tokens_with_multiplicity() -> None:
    # prediction "new new york" against "new york": common = {new: 1, york: 1} → p=2/3, r=1
    assert token_f1("new new york", "new york") == pytest.approx(0.8)


def test_grade_takes_the_best_over_the_gold_answers() -> None:
    result = grade("herbert", ["Frank Herbert", "Herbert", "F. Herbert"])
    assert result.exact and result.f1 == 1.0 and result.best == "Herbert"
    partial = grade("Frank Patrick", ["Frank Herbert", "Franklin Herbert"])
    assert not partial.exact
    assert partial.f1 == pytest.approx(0.5) and partial.best == "Frank Herbert"
    wrong = grade("Isaac Asimov", ["Frank Herbert", "Herbert"])
    assert not wrong.exact and wrong.f1 == 0.0 and wrong.best == "Frank Herbert"


def test_grade_needs_a_gold_answer() -> None:
    with pytest.raises(ValueError, match="gold"):
        grade("anything", [])


@given(st.text(max_size=60), st.lists(st.text(max_size=30), min_size=1, max_size=4))
def test_grade_is_bounded_and_exact_means_full_f1(prediction: str, answers: list[str]) -> None:
    result = grade(prediction, answers)
    assert 0.0 <= result.f1 <= 1.0
    if result.exact:
        assert result.f1 == 1.0
    assert normalize(normalize(prediction)) == normalize(prediction)  # idempotent
