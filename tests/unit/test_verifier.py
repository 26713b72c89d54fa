"""The verifier's pure parts, without a broker: grading search answers, trimming details,
matching a task's checks, award and awarded result (and refusing every other result), and the
offsets it may commit while tasks are open."""

from __future__ import annotations

from uuid import uuid4

from aiokafka import TopicPartition

from marketplace.services.verifier import Verifier, _trim, unmatched, verify
from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import BrokerConfig, Config
from schemas.events import (
    MAX_REASON,
    AuctionClosed,
    GeneralChecks,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskResult,
)
from tests.samples import awarding

PREFIX = "t."
STREAMS = ("checks", "results", "auctions", "outcomes")


def checks(task_id: str = "q1", answers: tuple[str, ...] = ("Paris",)) -> TaskChecks:
    return TaskChecks(
        producer="client", task_id=task_id, checks=SearchChecks(answers=list(answers))
    )


def result(task_id: str = "q1", output: str = "paris", error: str | None = None) -> TaskResult:
    return TaskResult(
        producer="a", task_id=task_id, agent_id="a", bid_id=uuid4(), output=output, error=error
    )


def by(agent_id: str, task_id: str = "q1", output: str = "paris") -> TaskResult:
    return TaskResult(
        producer=agent_id, task_id=task_id, agent_id=agent_id, bid_id=uuid4(), output=output
    )


def refused(v: Verifier) -> list[str]:
    """The reasons of the refusals the verifier is about to dead-letter."""
    return [reason for _, _, reason in v._refusals]


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
    assert no_result.result_event_id is None
    delivered = result("q1")
    no_checks = unmatched("q1", False, 60, "verifier", delivered)
    assert no_checks.details == "no checks (cannot verify) within 60 s of the result"
    assert no_checks.result_event_id == delivered.event_id
    awarded_only = unmatched("q1", has_checks=False, wait_s=60, producer="verifier")
    assert awarded_only.details == "no result within 60 s of the award"


async def test_an_outcome_names_the_result_it_graded() -> None:
    graded = result()
    assert (await verify(checks(), graded)).result_event_id == graded.event_id


def test_checks_award_and_result_of_a_task_are_matched_in_any_order() -> None:
    v = verifier()
    delivered = result("q1")
    v.take(delivered, at("results", 0, 5))
    v.take(checks("q1"), at("checks", 0, 2))
    task = v._open["q1"]
    assert task.result is None and task.waiting["a"].result == delivered  # waits for the award
    v.take(awarding(delivered), at("auctions", 0, 9))
    assert task.checks.checks == SearchChecks(answers=["Paris"])
    assert task.result == delivered and task.partition == 0 and task.gradable
    assert task.pins == {TopicPartition(PREFIX + "results", 0): 5}  # opened by its result
    assert refused(v) == []


def test_only_the_awarded_result_is_graded_and_every_other_one_is_refused() -> None:
    v = verifier()
    small, large = by("small"), by("large")
    v.take(small, at("results", 0, 0), b"small's")  # before the close: waits, like any
    v.take(checks("q1"), at("checks", 0, 0))
    v.take(awarding(large), at("auctions", 0, 0))
    assert v._open["q1"].result is None and not v._open["q1"].gradable
    [reason] = refused(v)
    assert "not the winner: small delivered, the award is large's" in reason
    assert str(small.event_id) in reason and v._refusals[0][1] == b"small's"
    v.take(large, at("results", 0, 1))
    v.take(large, at("results", 0, 1))  # redelivered: the same event, no refusal
    again = large.model_copy(update={"event_id": uuid4()})  # a second delivery
    v.take(again, at("results", 0, 2))
    wrong_bid = large.model_copy(update={"event_id": uuid4(), "bid_id": uuid4()})
    v.take(wrong_bid, at("results", 0, 3))
    assert v._open["q1"].result == large
    reasons = refused(v)[1:]
    assert len(reasons) == 2 and "a second result for the award" in reasons[0]
    assert "not the winning bid" in reasons[1]


def test_a_second_result_of_one_agent_before_the_award_is_refused_at_once() -> None:
    v = verifier()
    first, second = by("a"), by("a")
    v.take(first, at("results", 0, 0))
    v.take(second, at("results", 0, 1))
    assert v._open["q1"].waiting == {"a": v._open["q1"].waiting["a"]}
    assert v._open["q1"].waiting["a"].result == first
    [reason] = refused(v)
    assert "a second result from a before the award" in reason


def test_a_close_without_a_winner_grades_nothing_and_refuses_the_results() -> None:
    v = verifier()
    v.consumer.catching_up.clear()
    v.consumer.assignment = lambda: {TopicPartition(PREFIX + s, 0) for s in STREAMS}
    delivered = result("q1")
    v.take(delivered, at("results", 0, 0))
    v.take(checks("q1"), at("checks", 0, 0))
    v.take(
        AuctionClosed(producer="auctioneer", task_id="q1", reason="no_bids"), at("auctions", 0, 0)
    )
    v._act()
    assert "q1" not in v._open and v._running == {} and v._decided["q1"] == (None, None)
    [reason] = refused(v)
    assert "closed without a winner (no_bids)" in reason
    v.take(result("q1"), at("results", 0, 1))  # later: decided, with nothing graded
    assert "decided already, with no result graded" in refused(v)[1]


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
    v.take(result("q1"), at("results", 1, 0))  # a late result: the task is decided
    assert "q1" not in v._open
    assert "decided already" in refused(v)[0]


def test_offsets_are_not_committed_past_an_open_task() -> None:
    v = verifier()
    read = v.consumer.next_offsets
    checks_0, results_0, auctions_0, outcomes_0 = (TopicPartition(PREFIX + s, 0) for s in STREAMS)
    read.update({checks_0: 3, results_0: 7, auctions_0: 20, outcomes_0: 4})
    v.take(checks("q1"), at("checks", 0, 3))  # opens at checks offset 3
    read[checks_0] = 10
    read[auctions_0] = 25  # its award, and others, read since
    partitions = {checks_0, results_0, auctions_0, outcomes_0}
    assert v.safe_offsets(partitions) == {checks_0: 3, results_0: 7, auctions_0: 20, outcomes_0: 4}
    v.take(
        TaskOutcome(producer="verifier", task_id="q1", passed=False, score=0.0),
        at("outcomes", 0, 4),
    )
    read[outcomes_0] = 5
    expected = {checks_0: 10, results_0: 7, auctions_0: 25, outcomes_0: 5}
    assert v.safe_offsets(partitions) == expected


def test_an_award_read_first_pins_the_auctions_stream_until_the_task_closes() -> None:
    v = verifier()
    read = v.consumer.next_offsets
    checks_0, results_0, auctions_0, outcomes_0 = (TopicPartition(PREFIX + s, 0) for s in STREAMS)
    read.update({checks_0: 1, results_0: 1, auctions_0: 8, outcomes_0: 1})
    won = result("q1")
    v.take(awarding(won), at("auctions", 0, 8))
    read[auctions_0] = 30
    partitions = {checks_0, results_0, auctions_0, outcomes_0}
    assert v.safe_offsets(partitions)[auctions_0] == 8  # the award is read again after a crash
