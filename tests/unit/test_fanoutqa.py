"""The FanOutQA filter on hand-made records (multi-hop kept, single-hop fallback, answers not in
the text dropped, list answers skipped), the split, and the search task sets built on it."""

from __future__ import annotations

from collections import Counter

import pytest

from agents.tools.corpus import Document
from marketplace.evaluation import fanoutqa, task_sets
from marketplace.evaluation.fanoutqa import Question, answer_text, found, select, split_of, task
from marketplace.evaluation.task_sets import from_dataset, is_task_set, parse_spec, task_ids
from schemas.events import SearchChecks, SearchInputs

DOCUMENTS = [
    Document("Lionel Messi", "Lionel Messi plays for Inter Miami, a club based in Miami."),
    Document("Miami", "Miami had a population of 442,241 at the 2020 census."),
    Document("Rosario", "Rosario is the largest city in the province of Santa Fe."),
    Document("Paris", "Paris is the capital and largest city of France."),
]


def leaf(id: str, question: str, answer: object, title: str) -> dict:
    evidence = {"pageid": 1, "revid": 1, "title": title, "url": ""}
    return {"id": id, "question": question, "decomposition": [], "answer": answer,
            "depends_on": [], "evidence": evidence}  # fmt: skip


def record(id: str, question: str, answer: object, *subs: dict) -> dict:
    return {"id": id, "question": question, "decomposition": list(subs), "answer": answer,
            "categories": []}  # fmt: skip


MESSI_CLUB = leaf("s1", "Which club does Lionel Messi play for?", "Inter Miami", "Lionel Messi")
MIAMI_POPULATION = leaf("s2", "What is the population of Miami?", 442241, "Miami")


def test_a_question_whose_chain_is_in_the_corpus_and_answer_in_its_text_is_multi_hop() -> None:
    question = record(
        "q1", "How many people live where Messi's club is?", 442241, MESSI_CLUB, MIAMI_POPULATION
    )
    kept, counts = select([question], DOCUMENTS)
    assert kept == [
        Question("q1", question["question"], ("442241",), "multi", ("Lionel Messi", "Miami"), "q1")
    ]
    assert counts["kept: multi-hop"] == 1 and counts["kept: single-hop"] == 0


def test_with_an_article_missing_the_sub_questions_in_the_corpus_are_single_hop() -> None:
    other = leaf("s3", "Who coaches Inter Miami?", "Someone", "Inter Miami CF")
    question = record("q2", "Who coaches Messi's club?", "Someone", MESSI_CLUB, other)
    kept, counts = select([question], DOCUMENTS)
    assert [(q.id, q.hops, q.answers, q.root) for q in kept] == [
        ("s1", "single", ("Inter Miami",), "q2")
    ]
    assert counts["questions: an evidence article not in the corpus"] == 1
    assert counts["sub-questions: an evidence article not in the corpus"] == 1


def test_an_answer_the_articles_do_not_state_is_dropped() -> None:
    wrong = leaf("s4", "What is the population of Miami?", 500000, "Miami")
    question = record(
        "q3", "How many people live where Messi's club is?", 500000, MESSI_CLUB, wrong
    )
    kept, counts = select([question], DOCUMENTS)
    assert [q.id for q in kept] == ["s1"]
    assert counts["questions: the answer not in the articles' text"] == 1
    assert counts["sub-questions: the answer not in the articles' text"] == 1


@pytest.mark.parametrize("answer", [["Inter Miami", "Miami"], {"Messi": "Inter Miami"}, True, None])
def test_list_dict_and_yes_no_answers_are_skipped_and_counted(answer: object) -> None:
    question = record("q4", "Which clubs, and where?", answer, MESSI_CLUB, MIAMI_POPULATION)
    kept, counts = select([question], DOCUMENTS)
    assert [(q.id, q.hops) for q in kept] == [("s1", "single"), ("s2", "single")]
    assert counts["questions: a list, dict or yes/no answer (skipped)"] == 1


def test_a_nested_decomposition_is_judged_level_by_level() -> None:
    inner = record(
        "i1", "How many live in Messi's club's city?", 442241, MESSI_CLUB, MIAMI_POPULATION
    )
    capital = leaf("s5", "What is the capital of France?", "Paris", "Paris")
    outside = leaf("s6", "Who is the mayor of Paris?", "Anne Hidalgo", "Mayor of Paris")
    question = record("q5", "Compare them", "x", inner, capital, outside)
    kept, _ = select([question], DOCUMENTS)
    assert [(q.id, q.hops, q.root) for q in kept] == [
        ("i1", "multi", "q5"),
        ("s5", "single", "q5"),
    ]


def test_a_question_asked_again_is_kept_once_with_its_other_answer_as_an_alias() -> None:
    same = leaf("s7", "What is the population of Miami?", "442,241", "Miami")  # normalises alike
    longer = leaf("s8", "what is the population of  Miami", "442,241 at the 2020 census", "Miami")
    first = record("q6", "A", ["x"], MIAMI_POPULATION)
    second = record("q7", "B", ["y"], same, longer)
    kept, counts = select([first, second], DOCUMENTS)
    [question] = kept
    assert question.id == "s2"
    assert question.answers == ("442241", "442,241 at the 2020 census")
    assert counts["repeated questions (kept once)"] == 2
    assert counts["kept: single-hop"] == 1


def test_an_answer_is_found_as_whole_normalised_words() -> None:
    assert found("442,241", ["population of 442241 in"])
    assert found("Inter Miami", ["plays for INTER MIAMI."])
    assert found("the Wright brothers", ["by Wright brothers"])  # articles do not count
    assert not found("Rome", ["Romeo and Juliet"])
    assert not found("", ["anything"])
    assert found("Miami Paris", ["Miami", "Paris"])  # the texts are read together


def test_answer_text_keeps_strings_and_numbers_only() -> None:
    assert [answer_text(a) for a in ("Asia", 1636, 0.38)] == ["Asia", "1636", "0.38"]
    assert [answer_text(a) for a in (True, ["a"], {"a": "b"}, None)] == [None] * 4


def test_the_split_goes_by_the_top_level_question_and_is_stable() -> None:
    ids = [f"{n:016x}" for n in range(1000)]
    dev = [i for i in ids if split_of(i) == "dev"]
    assert 250 < len(dev) < 350  # about three in ten
    assert [split_of(i) for i in ids] == [split_of(i) for i in ids]
    question = Question("s1", "q", ("a",), "single", ("T",), dev[0])
    assert question.split == "dev"


def test_a_kept_question_is_a_search_task_with_its_answers_as_the_checks() -> None:
    question = Question("abc123", "What is the capital of France?", ("Paris", "paris"), "single",
                        ("Paris",), "root1")  # fmt: skip
    posted, checks = task(question)
    assert (posted.task_id, posted.kind, posted.prompt) == (
        "FanOutQA-abc123",
        "search",
        "What is the capital of France?",
    )
    assert posted.inputs == SearchInputs(corpus="wiki")
    assert checks.task_id == posted.task_id
    assert checks.checks == SearchChecks(answers=["Paris", "paris"])


# --- task sets ----------------------------------------------------------------------------------


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> list[Question]:
    """Five made-up kept questions in place of the real filter's (no download)."""
    questions = [
        Question(f"id{n}", f"Question {n}?", (f"answer {n}",), "single", ("T",), root)
        for n, root in enumerate(["r-dev", "r-eval", "r-eval", "r-dev", "r-eval"])
    ]
    monkeypatch.setattr(fanoutqa, "split_of", lambda root: root.removeprefix("r-"))
    monkeypatch.setattr(fanoutqa, "questions", lambda: (questions, Counter()))
    return questions


def test_fanoutqa_task_sets_index_the_kept_questions_and_their_splits(
    kept: list[Question],
) -> None:
    assert parse_spec("fanoutqa:1:5") == ("fanoutqa", 1, 5)
    assert task_ids("fanoutqa:0:2") == ["FanOutQA-id0", "FanOutQA-id1"]
    assert task_ids("fanoutqa-dev:0:2") == ["FanOutQA-id0", "FanOutQA-id3"]
    assert task_ids("fanoutqa-eval:1:3") == ["FanOutQA-id2", "FanOutQA-id4"]
    [posting] = from_dataset("fanoutqa-eval", 0, 1)
    assert posting.task.task_id == "FanOutQA-id1" and posting.task.kind == "search"
    assert posting.checks.checks == SearchChecks(answers=["answer 1"])
    assert is_task_set("fanoutqa-dev:0:1") and not is_task_set("fanoutqa-test:0:1")


def test_a_fanoutqa_range_beyond_the_kept_questions_is_refused(kept: list[Question]) -> None:
    with pytest.raises(ValueError, match=r"need 0 <= START < STOP <= 2, got '0:3'"):
        parse_spec("fanoutqa-dev:0:3")
    with pytest.raises(ValueError, match="one of: humaneval, mbpp, fanoutqa, fanoutqa-dev"):
        parse_spec("fanoutqa-test:0:1")


def test_a_dataset_that_cannot_be_fetched_is_one_error_naming_the_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def offline() -> None:
        raise RuntimeError("pip download fanoutqa==1.1.1 failed")

    monkeypatch.setattr(fanoutqa, "questions", offline)
    with pytest.raises(ValueError, match=r"task set 'fanoutqa:0:1': cannot load the questions"):
        task_sets.parse_spec("fanoutqa:0:1")
