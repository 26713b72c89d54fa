"""The front door in Python: post a task, get its answer back.

    async with Client(config) as client:
        outcome = await client.ask("Name three prime numbers.")
        outcome = await client.submit(task, checks)          # a TaskPosted and its TaskChecks
        outcomes = await client.submit_many([(task, checks), ...], concurrency=8)
        outcome = await client.result(task_id)               # from the log, later

A client posts a task with its checks (the one way postings are sent, `shared.posting`) and
waits for what the marketplace says of it: the `AuctionClosed`, and with a winner the winning
bid, its `TaskResult` and the verifier's `TaskOutcome`, folded into an `Outcome`
(`marketplace.log.outcomes`, the same fold `result` reads the log with).

How it listens: one reader of no consumer group (`shared.bus.reader`) for the client's life,
placed at the end of `bids`, `reviews`, `auctions`, `results` and `outcomes` when the client
starts, before anything is posted, so no answer can slip by; it commits nothing and joins no
group, so it leaves no offsets behind and takes no partition from a service. It keeps only the
events of the tasks being waited for, each checked against the keyring like any consumer's
(a record it cannot believe is skipped; the services dead-letter it).

Errors are one family, `SubmitError`: `InvalidTask` (refused before posting, nothing sent),
`Refused` (the auction refused the task, e.g. over its tenant's budget: `reason`, `detail`),
`SubmitTimeout` (no final answer in time: which step is missing, and the outcome so far).
`submit_many` raises none of these per task: each task's `Outcome` says what became of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from marketplace.log.outcomes import Outcome, complete, fold
from marketplace.shared import signing
from marketplace.shared.bus import Bus, reader
from marketplace.shared.config import BrokerConfig, Config
from marketplace.shared.keyfiles import trust_of
from marketplace.shared.offsets import highwater_marks
from marketplace.shared.posting import PRODUCER, Posting, default_checks, publish_one
from schemas.codec import EventDecodeError, decode, encode
from schemas.events import DeadLetter, Event, GeneralInputs, TaskChecks, TaskPosted
from schemas.topics import Topics

log = logging.getLogger("client")
STREAMS = ("bids", "reviews", "auctions", "results", "outcomes")  # what an answer is made of
LOG_STREAMS = ("tasks", *STREAMS)  # what `result` reads when it reads the topics
POLL_MS = 100
READ_TIMEOUT_S = 60.0  # reading one task's part of the topics
DEFAULT_TIMEOUT_S = 300.0

__all__ = [
    "Client",
    "InvalidTask",
    "Outcome",
    "Refused",
    "SubmitError",
    "SubmitTimeout",
    "result",
]


# --- errors ---------------------------------------------------------------------------------


class SubmitError(Exception):
    """A task that got no answer. `task_id` names it; `outcome` is what is known of it."""

    def __init__(self, message: str, task_id: str = "", outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.outcome = outcome


class InvalidTask(SubmitError):
    """The task cannot be posted as it is; nothing was sent."""


class Refused(SubmitError):
    """The auction refused the task: `reason` (e.g. "over_budget") and `detail` say why."""

    def __init__(self, outcome: Outcome) -> None:
        self.reason = outcome.reason or "refused"
        self.detail = outcome.detail
        super().__init__(
            f"task {outcome.task_id} refused: {self.reason}: {self.detail}",
            outcome.task_id,
            outcome,
        )


class SubmitTimeout(SubmitError):
    """No final answer within `timeout_s`; the message names the step still missing."""

    def __init__(self, task_id: str, timeout_s: float, outcome: Outcome | None) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            f"task {task_id}: no answer within {timeout_s:g} s: {missing(outcome)}",
            task_id,
            outcome,
        )


def missing(outcome: Outcome | None) -> str:
    """What a task still waits for, and who should have said it, from its outcome so far."""
    status = outcome.status if outcome else "posted"
    if status in ("posted", "open"):
        return (
            "the auction has not closed (is the auctioneer running, and is a live agent "
            f"taking {outcome.kind if outcome and outcome.kind else 'this kind of'} tasks?)"
        )
    if status == "awarded":
        return f"the winner, {outcome.winner_agent_id}, has delivered no result"
    if status == "delivered":
        return "the verifier has not judged the result (is `sale verifier` running?)"
    return f"the task is {status}, but part of its record was not seen"


# --- the client -----------------------------------------------------------------------------


class Client:
    """Posts tasks and waits for their outcomes. Use it as an async context manager.

    `trust`: the keys to sign with and check against; default: the process's own when it has
    the client's key (the command line installs them), else those `[security]` names.
    """

    def __init__(
        self, config: Config, *, producer: str = PRODUCER, trust: signing.Trust | None = None
    ) -> None:
        self.config = config
        self.bus = Bus(config.broker, producer, trust or _trust(config, producer))
        self._watch = _Watch(self.bus)

    async def __aenter__(self) -> Client:
        await self.bus.start()  # creates any missing topic first
        try:
            await self._watch.start()
        except BaseException:
            await self.bus.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._watch.stop()
        await self.bus.stop()

    async def submit(
        self,
        task: TaskPosted,
        checks: TaskChecks | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Outcome:
        """Posts the task and its checks; returns its final outcome. Raises `Refused` when the
        auction refuses it, `SubmitTimeout` when no final outcome comes in time."""
        outcome = await self._settle(self.posting(task, checks), timeout_s)
        if outcome.status == "refused":
            raise Refused(outcome)
        return outcome

    async def ask(
        self,
        prompt: str,
        tenant: str = "default",
        budget: float | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Outcome:
        """A general request: the prompt answered as text by the agent the auction picks."""
        return await self.submit(general_task(prompt, tenant, budget), None, timeout_s)

    async def submit_many(
        self,
        pairs: Iterable[tuple[TaskPosted, TaskChecks | None]],
        concurrency: int = 8,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[Outcome]:
        """Each task's outcome, in the order given, with at most `concurrency` waited for at
        once. A refusal or a timeout is that task's outcome (its status says which, and a
        timed-out task's outcome is what was known by then), not an exception; a task that
        cannot be posted at all raises `InvalidTask` before anything is sent."""
        if concurrency < 1:
            raise ValueError(f"concurrency: must be at least 1, not {concurrency}")
        postings = [self.posting(task, checks) for task, checks in pairs]
        ids = [p.task.task_id for p in postings]
        if repeated := sorted({i for i in ids if ids.count(i) > 1}):
            raise InvalidTask(f"task ids repeated in one batch: {', '.join(repeated)}")
        slots = asyncio.Semaphore(concurrency)

        async def one(posting: Posting) -> Outcome:
            async with slots:
                try:
                    return await self._settle(posting, timeout_s)
                except SubmitTimeout as late:
                    return late.outcome or Outcome(task_id=posting.task.task_id, status="posted")

        return list(await asyncio.gather(*(one(p) for p in postings)))

    async def result(self, task_id: str) -> Outcome | None:
        """The task's outcome so far from the log (`result`); None: the task is unknown."""
        return await result(self.config, task_id, self.bus.trust)

    # --- posting and waiting -------------------------------------------------------------

    def posting(self, task: TaskPosted, checks: TaskChecks | None) -> Posting:
        """The task and its checks as they will be sent (signed as this client), or
        `InvalidTask` saying why they cannot be."""
        if checks is not None and checks.task_id != task.task_id:
            raise InvalidTask(
                f"task {task.task_id}: its checks are for task {checks.task_id}", task.task_id
            )
        if checks is not None and checks.checks.kind != task.kind:
            raise InvalidTask(
                f"task {task.task_id}: {checks.checks.kind} checks for a {task.kind} task",
                task.task_id,
            )
        checks = checks or default_checks(task)
        if checks is None:
            raise InvalidTask(
                f"task {task.task_id}: a {task.kind} task needs its checks (the hidden tests "
                "or answers the verifier judges its result by)",
                task.task_id,
            )
        own = {"producer": self.bus.producer}
        posting = Posting(task.model_copy(update=own), checks.model_copy(update=own))
        for event in (posting.task, posting.checks):
            try:
                encode(event, self.config.broker.max_record_bytes)
            except ValueError as exc:
                raise InvalidTask(f"task {task.task_id}: {exc}", task.task_id) from None
        return posting

    async def _settle(self, posting: Posting, timeout_s: float) -> Outcome:
        """Posts, then waits for the final outcome (watching begins before the post)."""
        with self._watch.watching(posting.task):
            await publish_one(self.bus, posting)
            return await self._watch.wait(posting.task.task_id, timeout_s)


def general_task(prompt: str, tenant: str = "default", budget: float | None = None) -> TaskPosted:
    """A general task with a fresh id: a prompt to answer as text, nothing hidden to check."""
    return TaskPosted(
        producer=PRODUCER,
        task_id=f"ask-{uuid.uuid4().hex[:12]}",
        kind="general",
        prompt=prompt,
        inputs=GeneralInputs(),
        tenant=tenant,
        budget=budget,
    )


def _trust(config: Config, producer: str) -> signing.Trust:
    current = signing.current()
    if config.security.keyring is None and current.signer(producer) is not None:
        return current
    return trust_of(config.security)


# --- watching the streams -------------------------------------------------------------------


@dataclass
class _Watched:
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    dead: DeadLetter | None = None  # the task itself refused on arrival (e.g. its id was taken)


class _Watch:
    """One reader of the answer streams, from their end at start, for the tasks waited for."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.topics = Topics(bus.config.topic_prefix)
        self._tasks: dict[str, _Watched] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._reading: asyncio.Task | None = None
        self._failed: BaseException | None = None

    async def start(self) -> None:
        names = [getattr(self.topics, s) for s in (*STREAMS, "dlq")]
        ends = await highwater_marks(self.bus.config.bootstrap, names)
        self._consumer = await reader(self.bus.config)
        self._consumer.assign(list(ends))
        for tp, end in ends.items():
            self._consumer.seek(tp, end)
        self._reading = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading
        if self._consumer is not None:
            await self._consumer.stop()

    @contextlib.contextmanager
    def watching(self, task: TaskPosted) -> Iterator[None]:
        """Keeps the task's events while the block runs (the task itself first, as the client
        knows it), and forgets them after."""
        task_id = task.task_id
        if task_id in self._tasks:
            raise InvalidTask(f"task {task_id} is already being waited for", task_id)
        self._tasks[task_id] = _Watched([task])
        try:
            yield
        finally:
            del self._tasks[task_id]

    async def wait(self, task_id: str, timeout_s: float) -> Outcome:
        """The task's final outcome; `SubmitTimeout` with the outcome so far when it is late."""
        watched = self._tasks[task_id]
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    watched.changed.clear()
                    if self._failed is not None:
                        raise SubmitError(
                            f"task {task_id}: watching for its answer failed: {self._failed!r}",
                            task_id,
                            fold(task_id, watched.events),
                        )
                    if watched.dead is not None:
                        raise _refused_on_arrival(task_id, watched.dead)
                    if complete(task_id, watched.events):
                        return fold(task_id, watched.events)
                    await watched.changed.wait()
        except TimeoutError:
            raise SubmitTimeout(task_id, timeout_s, fold(task_id, watched.events)) from None

    async def _read(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=POLL_MS)
                for records in batches.values():
                    for record in records:
                        self._take(record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broker gone: every waiter hears of it
            log.exception("client: reading the answer streams failed")
            self._failed = exc
            for watched in self._tasks.values():
                watched.changed.set()

    def _take(self, record: ConsumerRecord) -> None:
        if record.topic == self.topics.dlq:
            self._take_dead_letter(record)
            return
        task_id = (record.key or b"").decode(errors="replace")
        watched = self._tasks.get(task_id)
        if watched is None:
            return
        event = trusted(self.bus.trust, self.bus.config.max_record_bytes, record)
        if event is not None:
            watched.events.append(event)
            watched.changed.set()

    def _take_dead_letter(self, record: ConsumerRecord) -> None:
        """A service refused one of the tasks waited for as it arrived (its id already taken,
        say): nothing more will come of it, so its waiter hears why at once."""
        letter = trusted(self.bus.trust, self.bus.config.max_record_bytes, record)
        if not isinstance(letter, DeadLetter) or letter.source_topic != self.topics.tasks:
            return
        watched = self._tasks.get((letter.raw_key or b"").decode(errors="replace"))
        if watched is not None and str(watched.events[0].event_id).encode() in letter.raw_value:
            watched.dead = letter
            watched.changed.set()


def _refused_on_arrival(task_id: str, letter: DeadLetter) -> Refused:
    outcome = Outcome(task_id=task_id, status="refused", reason="rejected", detail=letter.error)
    return Refused(outcome)


def trusted(trust: signing.Trust, max_bytes: int, record: ConsumerRecord) -> Event | None:
    """The event in a record if it holds a valid one its signature vouches for; else None
    (the services that consume the record dead-letter it: a client only skips it)."""
    try:
        event = decode(record.value or b"", max_bytes)
    except EventDecodeError as exc:
        log.warning(
            "client: skipped %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
        )
        return None
    refused = trust.check(event, signing.header_map(record.headers))
    if refused:
        log.warning(
            "client: skipped %s[%d]@%d: %s", record.topic, record.partition, record.offset, refused
        )
        return None
    return event


# --- reading one task from the log ----------------------------------------------------------


async def result(
    config: Config, task_id: str, trust: signing.Trust | None = None
) -> Outcome | None:
    """The task's outcome so far from the log: Postgres where the recorder keeps it (when
    `[database].url` is set), else (or while Postgres has nothing of it yet) the topics, whose
    records are checked against `trust` (default: the process's). Needs no key of its own:
    it only reads. None: the task is unknown."""
    if config.database.url:
        outcome = fold(task_id, await _from_postgres(config.database.url, task_id))
        if outcome is not None:
            return outcome
    trust = trust or signing.current()
    return fold(task_id, await read_key(config.broker, trust, task_id, LOG_STREAMS))


async def _from_postgres(url: str, task_id: str) -> list[Event]:
    import asyncpg

    from marketplace.log.store import load_events

    conn = await asyncpg.connect(url)
    try:
        return [row.event for row in await load_events(conn, task_id)]
    except asyncpg.UndefinedTableError:
        return []  # no log yet: the recorder has not run
    finally:
        await conn.close()


async def read_key(
    config: BrokerConfig, trust: signing.Trust, key: str, streams: Sequence[str]
) -> list[Event]:
    """The events of one key on `streams`, from offset 0 to the end as it is now. Records of a
    key land in the partition the producer's partitioner gives it, so only that one is read."""
    topics = Topics(config.topic_prefix)
    names = [getattr(topics, s) for s in streams]
    ends = await highwater_marks(config.bootstrap, names)
    partitioner = DefaultPartitioner()
    wanted: dict[TopicPartition, int] = {}
    for name in names:
        parts = sorted(tp.partition for tp in ends if tp.topic == name)
        if parts:
            tp = TopicPartition(name, partitioner(key.encode(), parts, parts))
            if ends[tp] > 0:
                wanted[tp] = ends[tp]
    if not wanted:
        return []
    consumer = await reader(config)
    events: list[Event] = []
    try:
        consumer.assign(list(wanted))
        await consumer.seek_to_beginning(*wanted)
        async with asyncio.timeout(READ_TIMEOUT_S):
            keep = partial(trusted, trust, config.max_record_bytes)
            await _read_until(consumer, key, wanted, keep, events)
    finally:
        await consumer.stop()
    return events


async def _read_until(
    consumer: AIOKafkaConsumer,
    key: str,
    wanted: dict[TopicPartition, int],
    keep: Callable[[ConsumerRecord], Event | None],
    events: list[Event],
) -> None:
    left = dict(wanted)
    while left:
        for tp, records in (await consumer.getmany(timeout_ms=POLL_MS)).items():
            for record in records:
                mine = record.offset < wanted[tp] and record.key == key.encode()
                if mine and (event := keep(record)) is not None:
                    events.append(event)
        for tp in list(left):
            if await consumer.position(tp) >= left[tp]:
                del left[tp]
