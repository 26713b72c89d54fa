"""The verifier's pure parts, without a broker: grading search answers, trimming details,
matching the two halves of a task, and the offsets it may commit while tasks are open."""

from __future__ import annotations

from uuid import uuid4

from aiokafka import TopicPartition

from marketplace.services.verifier import Verifier, _trim, unmatched, verify
from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import BrokerConfig, Config
from schemas.events import (
    MAX_REASON,
    GeneralChecks,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskResult,
)

PREFIX = "t."
STREAMS = ("checks", "results", "outcomes")


def checks(task_id: str = "q1", answers: tuple[str, ...] = ("Paris",)) -> TaskChecks:
    return TaskChecks(
        producer="client", task_id=task_id, checks=SearchChecks(answers=list(answers))
    )


def result(task_id: str = "q1", output: str = "paris", error: str | None = None) -> TaskResult:
    return TaskResult(
        producer="a", task_id=task_id, agent_id="a", bid_id=uuid4(), output=output, error=error
    )


def outcome(task_id: str) -> TaskOutcome:
    return TaskOutcome(producer="verifier", task_id=task_id, passed=False, score=0.0)


def at(stream: str, partition: int, offset: int) -> Source:
    return Source(PREFIX + stream, partition, offset, None)


def verifier() -> Verifier:
    """A verifier never started: its bus is built but never connects."""
    bus = Bus(BrokerConfig(bootstrap="127.0.0.1:1", topic_prefix=PREFIX), producer="verifier")
    return Verifier(Config(), bus)


async def test_a_search_answer_passes_on_an_exact_match_and_scores_its_best_f1() -> None:
    outcome = await verify(checks(answers=("Berlin", "Paris")), result(output="  paris "))
    assert outcome.passed and outcome.score == 1.0
    assert "gold answer 2 of 2" in outcome.details
    wrong = await verify(checks(answers=("the city of Paris",)), result(output="Paris"))
    assert not wrong.passed and 0 < wrong.score < 1


async def test_an_error_without_output_fails_without_running_anything() -> None:
    outcome = await verify(checks(), result(output=" ", error="model unavailable"))
    assert (outcome.passed, outcome.score) == (False, 0.0)
    assert outcome.details == "no output; the agent reported an error: model unavailable"


async def test_a_general_answer_is_recorded_as_answered_and_no_answer_as_failed() -> None:
    general = TaskChecks(producer="client", task_id="a1", checks=GeneralChecks())
    answered = await verify(general, result("a1", output="Paris is the capital."))
    assert (answered.passed, answered.score, answered.answered) == (None, None, True)
    assert answered.details == "a general task: nothing to check the answer against"
    empty = await verify(general, result("a1", output="  "))
    assert (empty.passed, empty.score, empty.details) == (
        False,
        0.0,
        "no answer: the output is empty",
    )


def test_long_details_keep_the_first_line_and_the_end_within_the_limit() -> None:
    assert _trim("short") == "short"
    head, tail = "Traceback (most recent call last):", "AssertionError: at the end"
    text = f"{head}\n{'x' * MAX_REASON}\n{tail}"
    trimmed = _trim(text)
    assert len(trimmed) <= MAX_REASON
    assert trimmed.startswith(f"{head}\n[...]\n") and trimmed.endswith(tail)


def test_a_half_that_never_finds_its_other_half_names_what_is_missing() -> None:
    no_result = unmatched("q1", has_checks=True, wait_s=60, producer="verifier")
    assert no_result.details == "no result within 60 s of the checks" and not no_result.passed
    no_checks = unmatched("q1", has_checks=False, wait_s=60, producer="verifier")
    assert no_checks.details == "no checks (cannot verify) within 60 s of the result"


def test_checks_and_result_of_a_task_are_matched_in_either_order() -> None:
    v = verifier()
    v.take(result("q1"), at("results", 0, 5))
    v.take(checks("q1"), at("checks", 0, 2))
    task = v._open["q1"]
    assert task.checks.checks == SearchChecks(answers=["Paris"])
    assert task.result.output == "paris" and task.partition == 0
    assert task.pins == {TopicPartition(PREFIX + "results", 0): 5}  # opened by its result


def test_a_second_different_half_is_ignored_and_an_outcome_closes_the_task() -> None:
    v = verifier()
    first = checks("q1", ("Paris",))
    v.take(first, at("checks", 1, 0))
    v.take(checks("q1", ("Lyon",)), at("checks", 1, 1))
    assert v._open["q1"].checks == first
    v.take(
        TaskOutcome(producer="verifier", task_id="q1", passed=True, score=1.0), at("outcomes", 1, 0)
    )
    assert "q1" not in v._open
    v.take(result("q1"), at("results", 1, 0))  # a late redelivery: the task is decided
    assert "q1" not in v._open


def test_offsets_are_not_committed_past_an_open_task() -> None:
    v = verifier()
    read = v.consumer.next_offsets
    checks_0, results_0, outcomes_0 = (TopicPartition(PREFIX + s, 0) for s in STREAMS)
    read.update({checks_0: 3, results_0: 7, outcomes_0: 4})
    v.take(checks("q1"), at("checks", 0, 3))  # opens at checks offset 3
    read[checks_0] = 10
    partitions = {checks_0, results_0, outcomes_0}
    assert v.safe_offsets(partitions) == {checks_0: 3, results_0: 7, outcomes_0: 4}
    v.take(
        TaskOutcome(producer="verifier", task_id="q1", passed=False, score=0.0),
        at("outcomes", 0, 4),
    )
    read[outcomes_0] = 5
    assert v.safe_offsets(partitions) == {checks_0: 10, results_0: 7, outcomes_0: 5}
