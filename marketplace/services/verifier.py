"""The verifier: joins the awarded `TaskResult` of each task with the task's hidden `TaskChecks`
and publishes one `TaskOutcome`, naming the result it graded.

Graded = awarded (`marketplace.core.award`): it reads the award (`AuctionClosed`) too and grades
only the winner's result for the winning bid. A result that comes before the award waits for it
(the first per agent: a bounded wait); any other result (another agent's, a second delivery, one
for a task closed without a winner or decided already) is refused: dead-lettered with its
reason, changing no outcome. A close without a winner grades nothing.

Coding tasks run the result's program and the dataset's tests in the sandbox; search tasks are
graded against the gold answers; a general task's answer has nothing to be checked against, so
it is recorded as answered (passed and score None), unless there is no answer at all.
`checks`, `results` and `auctions` are co-partitioned by task id, so one instance holds every
part of a task; offsets are never committed past a task still open, so a restart or a
rebalance re-reads what it needs and decides nothing twice. An awarded task whose checks or
result never come is decided as failed after `wait_s`; a task never awarded gets no outcome.
The design, and why: docs/verifier.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from aiokafka import TopicPartition

from marketplace.core import award
from marketplace.core.clock import aware
from marketplace.core.grading import grade
from marketplace.shared.bus import Bus, PartitionedConsumer, Source, read_back
from marketplace.shared.config import Config
from marketplace.shared.sandbox import Limits, run_python_async
from marketplace.shared.stopping import COMMIT_S, HANDLER_S, LEAVE_S, within
from schemas.events import (
    MAX_REASON,
    AuctionClosed,
    CodingChecks,
    Event,
    GeneralChecks,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskPosted,
    TaskResult,
)

log = logging.getLogger("verifier")
GROUP = "verifier"
STREAMS = ("checks", "results", "auctions", "outcomes", "tasks")
LIMITS = Limits(cpu_s=20, wall_s=30.0)  # per program run; the tests of one task, not a suite
WAIT_S = 3600.0  # how long half a task waits for the other half
TICK_S = 0.05
ANSWERED = "a general task: nothing to check the answer against"
DECIDED_KEPT = 100_000  # task ids remembered as decided (only redeliveries need them)
RECALL_OUTCOMES = 20_000  # per partition, read back when it is assigned (replays after restarts)
RECALL_TIMEOUT_S = 30.0
NOT_AWARDED = "no award for the task within {wait_s:g} s of its first record: nothing is graded"


# --- deciding one task ----------------------------------------------------------------------


async def verify(
    checks: TaskChecks,
    result: TaskResult,
    limits: Limits = LIMITS,
    producer: str = GROUP,
    kind: str | None = None,
) -> TaskOutcome:
    """The outcome of `result` under `checks` (runs a coding task's tests in the sandbox).
    `kind`: the task's, when its `TaskPosted` was read: checks of another kind are refused
    (general checks on a coding task would record any answer as answered, never graded)."""

    def outcome(passed: bool | None, score: float | None, details: str) -> TaskOutcome:
        return TaskOutcome(
            producer=producer,
            task_id=result.task_id,
            passed=passed,
            score=score,
            details=_trim(details),
            result_event_id=result.event_id,
        )

    if kind is not None and kind != checks.checks.kind:
        return outcome(False, 0.0, f"checks refused: {checks.checks.kind} checks for a {kind} task")
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


def unmatched(
    task_id: str,
    has_checks: bool,
    wait_s: float,
    producer: str,
    result: TaskResult | None = None,
) -> TaskOutcome:
    """The outcome of an awarded task whose checks or awarded result did not come within
    `wait_s`; it names the awarded result when that is what came (nothing was graded)."""
    if result is not None:
        details = f"no checks (cannot verify) within {wait_s:g} s of the result"
    else:
        details = f"no result within {wait_s:g} s of the {'checks' if has_checks else 'award'}"
    return TaskOutcome(
        producer=producer,
        task_id=task_id,
        passed=False,
        score=0.0,
        details=details,
        result_event_id=result.event_id if result is not None else None,
    )


def _after_the_outcome(result: TaskResult, graded: UUID | None, winner: str | None) -> str:
    """Why a result for a task decided already is refused."""
    if graded is None:
        return "the task is decided already, with no result graded"
    if winner is not None and result.agent_id != winner:
        return f"not the winner: {result.agent_id} delivered, the award is {winner}'s"
    return f"a second result for the award: the task was graded on result {graded}"


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


@dataclass(frozen=True)
class _Held:
    """A result waiting for its task's award, as it was read (a refusal dead-letters it)."""

    result: TaskResult
    source: Source
    body: bytes


@dataclass
class _Open:
    """A task seen on `checks`, `results` or `auctions` whose outcome has not been read back."""

    partition: int
    since: datetime  # occurred_at of its first record
    pins: dict[TopicPartition, int]  # read positions when it opened: not committed past these
    checks: TaskChecks | None = None
    award: AuctionClosed | None = None
    waiting: dict[str, _Held] = field(default_factory=dict)  # before the award: one per agent
    result: TaskResult | None = None  # the awarded result: the winner's first for its bid
    decided: bool = False  # an outcome is being made or was sent

    @property
    def gradable(self) -> bool:
        return self.award is not None and self.checks is not None and self.result is not None


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
        # Decided task → the result its outcome graded and the winner (None: none, or not
        # known), so that a redelivery of that result is a no-op and any other is refused.
        self._decided: OrderedDict[str, tuple[UUID | None, str | None]] = OrderedDict()
        self._kinds: OrderedDict[str, str] = OrderedDict()  # task → kind, as posted
        self._resumed_at: dict[int, int] = {}  # outcomes partition → its committed offset
        self._refusals: list[tuple[Source, bytes, str]] = []  # to dead-letter before committing
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
            self.take(delivery.event, delivery.source, delivery.body)
        await self._refuse()
        self._raise_failures()
        for partition in await self.consumer.caught_up():
            await self._recall_decided(partition)
            waiting = sum(t.partition == partition for t in self._open.values())
            log.info("partition %d caught up: %d tasks open", partition, waiting)
        self._act()
        await self._refuse()
        await self._commit()

    # --- folding records in --------------------------------------------------------------

    def take(self, event: Event | None, source: Source, body: bytes = b"") -> None:
        """Folds one delivered event in: an outcome closes its task; a check, an award or a
        result is part of one (the matching); anything else is not the verifier's. `body`:
        the record as read, for the dead letter of a result refused."""
        if isinstance(event, TaskOutcome):
            self._closed(event.task_id, event.result_event_id)
        elif isinstance(event, TaskPosted):
            self._kinds[event.task_id] = event.kind
            while len(self._kinds) > DECIDED_KEPT:
                self._kinds.popitem(last=False)
        elif isinstance(event, TaskChecks):
            task = self._task(event, source)
            if task is None:
                return
            if task.checks is None:
                task.checks = event
            elif task.checks != event:
                log.warning("%s: a second, different TaskChecks ignored", event.task_id)
        elif isinstance(event, AuctionClosed):
            task = self._task(event, source)
            if task is not None:
                self._awarded(task, event)
        elif isinstance(event, TaskResult):
            self._delivered(event, source, body)

    def _task(self, event: TaskChecks | AuctionClosed | TaskResult, source: Source) -> _Open | None:
        """The open task `event` is part of (opened by it if need be); None if decided."""
        task_id = event.task_id
        if task_id in self._decided:
            log.info("%s: %s ignored, the task is decided already", task_id, event.type)
            return None
        task = self._open.get(task_id)
        if task is None:
            tp = TopicPartition(source.topic, source.partition)
            read = self.consumer.next_offsets
            pins = {
                other: read[other]
                for other in self._topic_partitions(tp.partition)
                if other in read
            }
            pins[tp] = source.offset
            task = self._open[task_id] = _Open(tp.partition, event.occurred_at, pins)
        return task

    def _awarded(self, task: _Open, closed: AuctionClosed) -> None:
        """The award is in: of the results waiting, the award's is the task's, the rest are
        refused."""
        if task.award is not None:
            if task.award != closed:
                log.warning("%s: a second, different AuctionClosed ignored", closed.task_id)
            return
        task.award = closed
        waiting, task.waiting = task.waiting, {}
        for held in waiting.values():
            self._deliver(task, held)

    def _delivered(self, result: TaskResult, source: Source, body: bytes) -> None:
        """A result: the award's (kept), one waiting for the award (held, the first per
        agent), or refused with its reason."""
        held = _Held(result, source, body)
        if result.task_id in self._decided:
            graded, winner = self._decided[result.task_id]
            if graded == result.event_id:
                log.info("%s: the graded result again, ignored", result.task_id)
            else:
                self._refuse_later(held, _after_the_outcome(result, graded, winner))
            return
        task = self._task(result, source)
        if task.award is not None:
            self._deliver(task, held)
            return
        first = task.waiting.setdefault(result.agent_id, held)
        if first.result.event_id != result.event_id:
            self._refuse_later(
                held,
                f"a second result from {result.agent_id} before the award: its first "
                f"({first.result.event_id}) waits for it",
            )

    def _deliver(self, task: _Open, held: _Held) -> None:
        """A result for an awarded task: the first for the award is the task's; any other is
        refused (`marketplace.core.award`)."""
        result, closed = held.result, task.award
        if not award.matches(closed, result):
            self._refuse_later(held, award.why_not(closed, result))
        elif task.result is None:
            task.result = result
        elif task.result.event_id != result.event_id:
            self._refuse_later(held, award.second(task.result, result))

    def _refuse_later(self, held: _Held, reason: str) -> None:
        """Refused: dead-lettered (`_refuse`) before any offset past it is committed."""
        result = held.result
        self._refusals.append(
            (held.source, held.body, f"TaskResult {result.event_id} not graded: {reason}")
        )

    async def _refuse(self) -> None:
        refusals, self._refusals = self._refusals, []
        for source, body, reason in refusals:
            await self.bus.dead_letter(source, body, self.group, reason)

    async def adopted(self, partitions: set[TopicPartition]) -> None:
        """Notes where each `outcomes` partition just assigned resumes (its committed offset):
        the outcomes before it are recalled once the partition has caught up."""
        for tp in partitions:
            if tp.topic == self.bus.topics.outcomes:
                self._resumed_at[tp.partition] = await self.consumer.position(tp)

    async def _recall_decided(self, partition: int) -> None:
        """Marks decided the tasks of the last `RECALL_OUTCOMES` outcomes before where a
        partition resumed, before anything of it is decided. Those outcomes are not read again
        after a restart or a rebalance, yet a check, award or result replayed now (anyone who
        can read the topics can send one again) must not be graded a second time."""
        end = self._resumed_at.pop(partition, 0)
        if end == 0:
            return
        tp = TopicPartition(self.bus.topics.outcomes, partition)
        records = await read_back(self.bus.config, tp, end, RECALL_OUTCOMES, RECALL_TIMEOUT_S)
        outcomes = [(e, h) for e, h in records if isinstance(e, TaskOutcome)]
        refusals = await self.bus.trust.check_many(outcomes)
        for (outcome, _), refused in zip(outcomes, refusals, strict=True):
            if refused is None:  # a forgery was dead-lettered when first read: not believed now
                self._closed(outcome.task_id, outcome.result_event_id)
        log.info("partition %d: %d decided tasks recalled", partition, len(outcomes))

    def _closed(self, task_id: str, graded: UUID | None = None) -> None:
        """An outcome for the task is in the log: it is decided, whoever decided it."""
        task = self._open.pop(task_id, None)
        if task is not None and task.award is not None:
            winner = task.award.winner_agent_id
        else:
            winner = self._decided.get(task_id, (None, None))[1]
        self._remember(task_id, graded, winner)
        running = self._running.get(task_id)
        if running is not None and not running.done():
            running.cancel()  # another verifier decided it first (after a rebalance)

    def _remember(self, task_id: str, graded: UUID | None, winner: str | None) -> None:
        self._decided[task_id] = graded, winner
        self._decided.move_to_end(task_id)
        while len(self._decided) > DECIDED_KEPT:
            self._decided.popitem(last=False)

    # --- deciding ------------------------------------------------------------------------

    def _act(self) -> None:
        """Starts a decision for every open task of a caught-up partition that can have one;
        forgets those that will have none (closed without a winner, never awarded)."""
        ready = self.consumer.ready_partitions()
        now = datetime.now(UTC)
        for task_id, task in list(self._open.items()):
            if task.decided or task.partition not in ready:
                continue
            late = now - aware(task.since) > self.wait
            if task.award is not None and task.award.winner_agent_id is None:
                self._forget(task_id, task, "closed without a winner: nothing to grade")
            elif task.award is None and late:
                self._forget(task_id, task, NOT_AWARDED.format(wait_s=self.wait.total_seconds()))
            elif task.gradable or (late and (task.checks or task.result)):
                task.decided = True
                graded = task.result.event_id if task.result else None
                self._remember(task_id, graded, task.award.winner_agent_id)
                self._running[task_id] = asyncio.create_task(self._decide(task))
            elif late:  # an award alone (an old one read again): no checks, no result
                self._forget(task_id, task, "awarded, but neither checks nor a result came")

    def _forget(self, task_id: str, task: _Open, why: str) -> None:
        """Closes a task that gets no outcome; the results waiting for it are refused."""
        log.info("%s: no outcome: %s", task_id, why)
        for held in task.waiting.values():
            self._refuse_later(held, why)
        del self._open[task_id]
        self._remember(task_id, None, None)

    async def _decide(self, task: _Open) -> None:
        if task.gradable:
            async with self._slots:
                kind = self._kinds.get(task.award.task_id)
                outcome = await verify(
                    task.checks, task.result, self.limits, self.bus.producer, kind
                )
        else:
            task_id, has_checks = task.award.task_id, task.checks is not None
            wait_s = self.wait.total_seconds()
            outcome = unmatched(task_id, has_checks, wait_s, self.bus.producer, task.result)
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
