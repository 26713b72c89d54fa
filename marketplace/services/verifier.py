"""The verifier: joins each `TaskResult` with the hidden `TaskChecks` of its task and publishes
one `TaskOutcome`.

Coding tasks run the result's program and the dataset's tests in the sandbox; search tasks are
graded against the gold answers; a general task's answer has nothing to be checked against, so
it is recorded as answered (passed and score None), unless there is no answer at all.
`checks` and `results` are co-partitioned by task id, so one instance holds both halves of a
task; offsets are never committed past a task still open, so a restart or a rebalance re-reads
what it needs and decides nothing twice; a half whose other half never comes is decided as
failed after `wait_s`. The design, and why: docs/verifier.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition

from marketplace.core.clock import aware
from marketplace.core.grading import grade
from marketplace.shared.bus import Bus, PartitionedConsumer, Source
from marketplace.shared.config import Config
from marketplace.shared.sandbox import Limits, run_python_async
from marketplace.shared.stopping import COMMIT_S, HANDLER_S, LEAVE_S, within
from schemas.events import (
    MAX_REASON,
    CodingChecks,
    Event,
    GeneralChecks,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskResult,
)

log = logging.getLogger("verifier")
GROUP = "verifier"
STREAMS = ("checks", "results", "outcomes")
LIMITS = Limits(cpu_s=20, wall_s=30.0)  # per program run; the tests of one task, not a suite
WAIT_S = 3600.0  # how long half a task waits for the other half
TICK_S = 0.05
ANSWERED = "a general task: nothing to check the answer against"
DECIDED_KEPT = 100_000  # task ids remembered as decided (only redeliveries need them)


# --- deciding one task ----------------------------------------------------------------------


async def verify(
    checks: TaskChecks, result: TaskResult, limits: Limits = LIMITS, producer: str = GROUP
) -> TaskOutcome:
    """The outcome of `result` under `checks` (runs a coding task's tests in the sandbox)."""

    def outcome(passed: bool | None, score: float | None, details: str) -> TaskOutcome:
        return TaskOutcome(
            producer=producer,
            task_id=result.task_id,
            passed=passed,
            score=score,
            details=_trim(details),
        )

    if result.error is not None and not result.output.strip():
        return outcome(False, 0.0, f"no output; the agent reported an error: {result.error}")
    match checks.checks:
        case CodingChecks(tests=tests):
            run = await run_python_async(_program(result.output, tests), limits)
            return outcome(run.ok, 1.0 if run.ok else 0.0, run.summary())
        case SearchChecks(answers=answers):
            graded = grade(result.output, answers)
            which = f"gold answer {answers.index(graded.best) + 1} of {len(answers)}"
            details = (
                f"exact match: {'yes' if graded.exact else 'no'}; "
                f"token F1 {graded.f1:.3f} (best: {which})"
            )
            return outcome(graded.exact, graded.f1, details)
        case GeneralChecks():
            if not result.output.strip():
                return outcome(False, 0.0, "no answer: the output is empty")
            return outcome(None, None, ANSWERED)
    raise TypeError(f"unknown checks: {checks.checks!r}")  # pragma: no cover


def verdict(outcome: TaskOutcome) -> str:
    if outcome.answered:
        return "answered"
    return f"{'passed' if outcome.passed else 'failed'}, score {outcome.score:.3f}"


def unmatched(task_id: str, has_checks: bool, wait_s: float, producer: str) -> TaskOutcome:
    """The outcome of a task whose other half did not come within `wait_s`."""
    missing = "no result" if has_checks else "no checks (cannot verify)"
    other = "checks" if has_checks else "result"
    return TaskOutcome(
        producer=producer,
        task_id=task_id,
        passed=False,
        score=0.0,
        details=f"{missing} within {wait_s:g} s of the {other}",
    )


def _program(output: str, tests: str) -> str:
    """The result's code, then the tests; a lone surrogate (valid JSON, invalid UTF-8) becomes '?'
    so the program can be written to a file at all."""
    program = output + "\n\n" + tests
    return program.encode("utf-8", "replace").decode("utf-8")


def _trim(text: str) -> str:
    """At most MAX_REASON characters, keeping the end, where a traceback says what went wrong."""
    if len(text) <= MAX_REASON:
        return text
    head = text.splitlines()[0][:200] if text else ""
    keep = MAX_REASON - len(head) - 10
    return f"{head}\n[...]\n{text[-keep:]}"


# --- the service ----------------------------------------------------------------------------


@dataclass
class _Open:
    """A task seen on `checks` or `results` whose outcome has not been read back yet."""

    partition: int
    since: datetime  # occurred_at of its first half
    pins: dict[TopicPartition, int]  # read positions when it opened: not committed past these
    checks: TaskChecks | None = None
    result: TaskResult | None = None
    decided: bool = False  # an outcome is being made or was sent


class Verifier:
    def __init__(
        self,
        config: Config,
        bus: Bus,
        *,
        limits: Limits = LIMITS,
        wait_s: float = WAIT_S,
        concurrency: int | None = None,
    ) -> None:
        self.bus = bus
        self.limits = limits
        self.wait = timedelta(seconds=wait_s)
        self.group = bus.group(GROUP)
        self._slots = asyncio.Semaphore(concurrency or max(1, os.cpu_count() or 1))
        self._open: dict[str, _Open] = {}
        self._decided: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, asyncio.Task[None]] = {}
        self.consumer = PartitionedConsumer(bus, STREAMS, GROUP, owner=self)

    async def run(self, stop: asyncio.Event) -> None:
        """Verifies until `stop` is set; then lets running verifications finish for up to
        `HANDLER_S` (`stopping`): one cut short is not committed past, and is run again by
        whoever reads its task next."""
        await run_python_async("pass", Limits(cpu_s=5, wall_s=20))  # SandboxUnavailable: no start
        await self.bus.start()
        await self.consumer.start()
        log.info("verifying in group %s", self.group)
        try:
            while not stop.is_set():
                await self._poll()
        finally:
            await within(self._finish_running(), HANDLER_S, "verifier: the verifications running")
            await within(self._abandon_running(), LEAVE_S, "verifier: cancelling the rest")
            await within(self._commit(), COMMIT_S, "verifier: the last commit")
            await self.consumer.stop()
            await self.bus.stop()

    async def _poll(self) -> None:
        async for delivery in self.consumer.poll(TICK_S):
            self.take(delivery.event, delivery.source)
        self._raise_failures()
        for partition in await self.consumer.caught_up():
            waiting = sum(t.partition == partition for t in self._open.values())
            log.info("partition %d caught up: %d tasks open", partition, waiting)
        self._act()
        await self._commit()

    # --- folding records in --------------------------------------------------------------

    def take(self, event: Event | None, source: Source) -> None:
        """Folds one delivered event in: an outcome closes its task, a check or a result is half
        of one (the matching); anything else is not the verifier's."""
        if isinstance(event, TaskOutcome):
            self._closed(event.task_id)
        elif isinstance(event, TaskChecks | TaskResult):
            self._half(event, TopicPartition(source.topic, source.partition), source.offset)

    def _half(self, event: TaskChecks | TaskResult, tp: TopicPartition, offset: int) -> None:
        task_id = event.task_id
        if task_id in self._decided:
            log.info("%s: %s ignored, the task is decided already", task_id, event.type)
            return
        task = self._open.get(task_id)
        if task is None:
            read = self.consumer.next_offsets
            pins = {
                other: read[other]
                for other in self._topic_partitions(tp.partition)
                if other in read
            }
            pins[tp] = offset
            task = self._open[task_id] = _Open(tp.partition, event.occurred_at, pins)
        if isinstance(event, TaskChecks):
            if task.checks is None:
                task.checks = event
            elif task.checks != event:
                log.warning("%s: a second, different TaskChecks ignored", task_id)
        elif task.result is None:
            task.result = event
        elif task.result != event:
            log.warning("%s: a second TaskResult (bid %s) ignored", task_id, event.bid_id)

    def _closed(self, task_id: str) -> None:
        """An outcome for the task is in the log: it is decided, whoever decided it."""
        self._remember(task_id)
        self._open.pop(task_id, None)
        running = self._running.get(task_id)
        if running is not None and not running.done():
            running.cancel()  # another verifier decided it first (after a rebalance)

    def _remember(self, task_id: str) -> None:
        self._decided[task_id] = None
        self._decided.move_to_end(task_id)
        while len(self._decided) > DECIDED_KEPT:
            self._decided.popitem(last=False)

    # --- deciding ------------------------------------------------------------------------

    def _act(self) -> None:
        """Starts a decision for every open task of a caught-up partition that can have one."""
        ready = self.consumer.ready_partitions()
        now = datetime.now(UTC)
        for task_id, task in self._open.items():
            if task.decided or task.partition not in ready:
                continue
            whole = task.checks is not None and task.result is not None
            if whole or now - aware(task.since) > self.wait:
                task.decided = True
                self._remember(task_id)
                self._running[task_id] = asyncio.create_task(self._decide(task))

    async def _decide(self, task: _Open) -> None:
        if task.checks is not None and task.result is not None:
            async with self._slots:
                outcome = await verify(task.checks, task.result, self.limits, self.bus.producer)
        else:
            task_id = (task.checks or task.result).task_id
            wait_s = self.wait.total_seconds()
            outcome = unmatched(task_id, task.checks is not None, wait_s, self.bus.producer)
        await self.bus.publish(outcome)
        log.info(
            "%s: %s: %s",
            outcome.task_id,
            verdict(outcome),
            outcome.details.splitlines()[0] if outcome.details else "",
        )

    def _raise_failures(self) -> None:
        """A verification that raised (the sandbox went away, the broker refused the outcome)
        stops the service: nothing past it is committed, so a restart does it again."""
        for task_id, running in list(self._running.items()):
            if running.done():
                del self._running[task_id]
                if not running.cancelled() and running.exception() is not None:
                    raise running.exception()

    async def _finish_running(self) -> None:
        """Waits for the verifications running (the caller bounds how long)."""
        running = list(self._running.values())
        if running:
            await asyncio.wait(running)

    async def _abandon_running(self) -> None:
        """Cancels the verifications still running (their sandboxes are killed); their tasks
        stay open, so nothing past them is committed."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._running.clear()

    # --- partitions, catching up, committing ---------------------------------------------

    def _topic_partitions(self, partition: int) -> list[TopicPartition]:
        return [TopicPartition(getattr(self.bus.topics, s), partition) for s in STREAMS]

    def safe_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Per topic partition, how far every open task of it has been read past."""
        safe = {tp: offset for tp, offset in self.consumer.next_offsets.items() if tp in partitions}
        for task in self._open.values():
            for tp in self._topic_partitions(task.partition):
                if tp not in safe:
                    continue
                if tp in task.pins:
                    safe[tp] = min(safe[tp], task.pins[tp])
                else:  # opened before anything was read there: all of it must be re-read
                    del safe[tp]
        return safe

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        if partitions is None:
            partitions = self.consumer.assignment()
        await self.consumer.commit(self.safe_offsets(partitions))

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        with contextlib.suppress(Exception):
            await self._commit(partitions)
        lost = {tp.partition for tp in partitions}
        for task_id in [t for t, task in self._open.items() if task.partition in lost]:
            del self._open[task_id]
            running = self._running.pop(task_id, None)
            if running is not None:
                running.cancel()
