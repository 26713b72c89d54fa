"""`sale ingest-bench`: events/s the recorder sustains into Postgres, and replay events/s.

N realistic events (whole auctions: task, checks, bids, juries, reviews, refinement, close,
result, outcome, heartbeats) are published, each signed by its producer, to a fresh topic prefix
first. Then, in the same run and over the very same records:

1. the raw Kafka consume rate: one consumer of no group reads them all from offset 0, not
   decoded (the best of three reads: the yardstick, so the ratios below are conservative);
2. the recorder's ingest rate: a `Recorder` starts on them (migrations, group join and all)
   and the clock stops when the `events` table holds N rows; it checks every signature as
   deployed;
3. the replay rate: the replay's reader loads the log back from Postgres and `verify`
   recomputes every decision in it;
4. the same with every stored signature checked too, from one read (`provenance`): what
   `sale replay --verify` does with a keyring.

Each rate is printed with its ratio to the raw consume rate of the same run: on a shared
machine the rates move with the load, the ratios much less. `--profile` runs the recorder and
the replay under cProfile and prints, after the figures, the functions that took the most time
of their own (the figures of such a run are the profiler's, not the code's).

The database is a fresh one, dropped at the end; the broker is KAFKA_BOOTSTRAP, else a Tansu
started for the run; Postgres is DATABASE_URL, else a server on 127.0.0.1:5432, else embedded.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from agents.scripted_agent import ScriptedAgent
from marketplace.log import provenance, replay
from marketplace.log.replay.readers import read_postgres
from marketplace.services.recorder import Recorder
from marketplace.shared import signing
from marketplace.shared.admin import ensure_topics
from marketplace.shared.bus import Bus, from_start, reader
from marketplace.shared.config import BrokerConfig, Config
from marketplace.shared.database import (
    create_database,
    drop_database,
    local_server_answers,
    resolve_server,
)
from marketplace.shared.kafka_auth import client_options
from marketplace.shared.keyfiles import run_keys
from marketplace.shared.local_broker import LocalBroker
from marketplace.testing.market import Market
from schemas.codec import encode
from schemas.events import (
    CodingChecks,
    CodingInputs,
    Event,
    TaskChecks,
    TaskOutcome,
    TaskPosted,
    Weights,
)
from schemas.topics import Topics

WEIGHTS = Weights(cost=0.05, entropy=0.5, jury=1.0, jurors={"large": 1.5})
AGENTS = {"small": 0.05, "medium": 0.16, "large": 0.36}  # agent → price per million tokens
ENTROPY = {"small": 0.9, "medium": 0.6, "large": 0.4}
PROMPT = 'def pair_sum(xs: list[int], target: int) -> bool:\n    """Any two sum to target?"""\n'
TIMEOUT_S = 600.0


# --- the events: whole auctions, played by the real state machine ------------------------------


def _agents() -> list[ScriptedAgent]:
    """large wins round 0 on the jury's scores; small and medium, cheaper, refine and win."""
    scores = {"large": 4.0, "small:1": 4.5, "medium:1": 4.5}
    return [
        ScriptedAgent(
            agent,
            price=price,
            plan_tokens=120 + 40 * i,
            entropy=ENTROPY[agent],
            scores=scores,
            default_score=2.0,
            refined_plan_tokens=None if agent == "large" else 60,
        )
        for i, (agent, price) in enumerate(AGENTS.items())
    ]


def auction(task_id: str, at: datetime) -> list[Event]:
    """One auction as the marketplace logs it (~22 events): the task and its checks, the
    auction as the state machine plays it among scripted agents (large wins round 0, small
    refines and wins), the winner's result, the verifier's outcome, the agents' heartbeats."""
    agents = _agents()
    market = Market(*agents, weights=WEIGHTS, start=at)
    market.post(
        TaskPosted(
            producer="client",
            task_id=task_id,
            kind="coding",
            prompt=PROMPT,
            inputs=CodingInputs(entry_point="pair_sum", examples=["assert pair_sum([1, 2], 3)"]),
            budget=0.01,
        )
    )
    checks = TaskChecks(
        producer="client",
        task_id=task_id,
        checks=CodingChecks(entry_point="pair_sum", tests="assert not pair_sum([1], 2)"),
    )
    market.step()
    outcome = TaskOutcome(
        producer="verifier", task_id=task_id, passed=True, score=1.0, details="3/3 tests"
    )
    [posted, *played] = market.log
    return [posted, checks, *played, outcome, *(agent.heartbeat() for agent in agents)]


def workload(count: int) -> list[Event]:
    """Exactly `count` events: whole auctions, the last one cut short if need be."""
    events: list[Event] = []
    at = datetime.now(UTC)
    while len(events) < count:
        events += auction(f"ingest-{len(events)}", at)
    return events[:count]


# --- the measures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    count: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.count / self.seconds


def line(label: str, measure: Measure, raw: Measure, note: str = "") -> str:
    """One figure and its ratio to the raw consume rate of the same run."""
    figure = f"{measure.per_s:9.1f}/s  {measure.per_s / raw.per_s:6.3f} × raw"
    span = f"{measure.count} events in {measure.seconds:.2f} s"
    return f"{label:<34} {figure}   {span}{f'   ({note})' if note else ''}"


@dataclass
class Profiles:
    """cProfile of the phases asked for, kept as text to print after the figures."""

    enabled: bool
    reports: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def phase(self, label: str, top: int = 14) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime")
            stats.print_stats(top)
            body = text.getvalue().split("ncalls", 1)[-1].rstrip()
            self.reports.append(
                f"--- {label}: the {top} functions with the most time of their own\nncalls{body}"
            )


class Progress:
    """Progress on stderr: one self-overwriting line on a terminal, else a line every 5 s."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self._shown = label, total, time.monotonic()
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._shown < (0.5 if self._tty else 5.0) and done < self.total:
            return
        self._shown = now
        text = f"  {self.label}: {done}/{self.total}"
        if self._tty:
            print(f"\r{text}", end="\n" if done >= self.total else "", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


async def publish(broker: BrokerConfig, events: list[Event]) -> None:
    """Writes `events` to their topics, each signed by its producer's key (as the stack would)."""
    await ensure_topics(broker)
    topics = Topics(broker.topic_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap,
        linger_ms=5,
        enable_idempotence=False,
        **client_options(broker),
    )
    await producer.start()
    progress = Progress("publishing", len(events))
    signers = {e.producer: signing.current().signer(e.producer) for e in events}
    try:
        for start in range(0, len(events), 1000):
            chunk = events[start : start + 1000]
            sent = [
                await producer.send(
                    topics.for_event(e), encode(e), key=e.key.encode(), headers=_signed(e, signers)
                )
                for e in chunk
            ]
            await asyncio.gather(*sent)
            progress(start + len(chunk))
    finally:
        await producer.stop()


def _signed(event: Event, signers: dict) -> list[tuple[str, bytes]]:
    signer = signers[event.producer]
    headers = {"type": event.type, **(signer.headers(event) if signer else {})}
    return [(name, value.encode()) for name, value in headers.items()]


async def raw_consume_rate(broker: BrokerConfig, count: int, reads: int = 3) -> Measure:
    """The fastest of `reads` reads of every record of every topic from offset 0, by a
    consumer of no group, not decoded."""
    return min([await _raw_read(broker, count) for _ in range(reads)], key=lambda m: m.seconds)


async def _raw_read(broker: BrokerConfig, count: int) -> Measure:
    consumer = await reader(broker)
    progress = Progress("raw consume", count)
    try:
        start = time.perf_counter()
        await from_start(consumer, Topics(broker.topic_prefix).all())
        seen = 0
        async with asyncio.timeout(TIMEOUT_S):
            while seen < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    seen += len(records)
                progress(seen)
        return Measure(seen, time.perf_counter() - start)
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Ingest:
    total: Measure  # from the recorder's start (migrations, group join) to the N-th row
    first_row_s: float  # when the first rows were seen
    steady: Measure | None  # from the first rows seen to the N-th: the sustained rate
    waited_s: float  # of the total, the recorder waiting for Postgres (Recorder's own count)


async def ingest_rate(broker: BrokerConfig, database_url: str, count: int) -> Ingest:
    """Starts a recorder on the published records; polls count(*) until it holds them all."""
    recorder = Recorder(Config(broker=broker), Bus(broker, producer="recorder"), database_url)
    stop = asyncio.Event()
    conn: asyncpg.Connection | None = None
    progress = Progress("recorded", count)
    start = time.perf_counter()
    running = asyncio.create_task(recorder.run(stop))
    first: tuple[float, int] | None = None  # (when, rows) at the first poll that saw rows
    try:
        async with asyncio.timeout(TIMEOUT_S):
            rows = 0
            while rows < count:
                await asyncio.sleep(0.05)
                if running.done():
                    running.result()  # raises what stopped it
                    raise RuntimeError("the recorder stopped before recording every event")
                conn = conn or await _connect_when_migrated(database_url)
                if conn is None:
                    continue
                rows = await conn.fetchval("SELECT count(*) FROM events")
                if rows and first is None:
                    first = (time.perf_counter(), rows)
                progress(rows)
        end = time.perf_counter()
        assert first is not None
        steady = Measure(rows - first[1], end - first[0]) if rows > first[1] else None
        return Ingest(
            Measure(rows, end - start), first[0] - start, steady, recorder.waited_for_postgres_s
        )
    finally:
        if conn is not None:
            await conn.close()
        stop.set()
        await running


async def _connect_when_migrated(url: str) -> asyncpg.Connection | None:
    conn = await asyncpg.connect(url)
    if await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
        return conn
    await conn.close()
    return None


async def replay_rate(database_url: str) -> tuple[Measure, int]:
    """(events read back and their decisions verified, discrepancies: 0 when all is well)."""
    start = time.perf_counter()
    log = await read_postgres(database_url)
    found = replay.verify(log.events)
    elapsed = time.perf_counter() - start
    return Measure(len(log.events), elapsed), len(found) + len(log.unreadable)


async def checked_replay_rate(database_url: str) -> tuple[Measure, int]:
    """The same with every stored signature checked (`sale replay --verify` with a keyring):
    (events read back and checked, discrepancies)."""
    start = time.perf_counter()
    log, found = await provenance.read_checked(database_url, signing.current().keyring)
    found += replay.verify(log.events)
    elapsed = time.perf_counter() - start
    rows = await _count_checked(database_url)
    return Measure(rows, elapsed), len(found) + len(log.unreadable)


async def _count_checked(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM events WHERE type <> 'DeadLetter'")
    finally:
        await conn.close()


# --- the run -----------------------------------------------------------------------------------


def postgres_kind(url: str) -> str:
    if url:
        return "server (DATABASE_URL)"
    return "server (127.0.0.1:5432)" if local_server_answers() else "embedded"


async def main(count: int, profile: bool = False) -> int:
    url = os.environ.get("DATABASE_URL", "")
    kind = postgres_kind(url)
    profiles = Profiles(profile)
    with contextlib.ExitStack() as stack:
        bootstrap = (
            os.environ.get("KAFKA_BOOTSTRAP") or stack.enter_context(LocalBroker()).bootstrap
        )
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "postgres"
        server = stack.enter_context(resolve_server(url, data_dir, probe_local=True))
        print(
            f"broker {bootstrap}; {os.cpu_count()} CPUs; Postgres {kind}; {count} events "
            f"({count / len(auction('x', datetime.now(UTC))):.0f} auctions)"
            + ("; under cProfile" if profile else ""),
            flush=True,
        )
        broker = BrokerConfig(
            bootstrap=bootstrap, topic_prefix=f"ib{uuid.uuid4().hex[:8]}.", fetch_max_wait_ms=10
        )
        database_url = await create_database(server, prefix="sale_ingest")
        differ = 0
        try:
            await publish(broker, workload(count))
            raw = await raw_consume_rate(broker, count)
            print(line("raw Kafka consume (best of 3)", raw, raw), flush=True)
            with profiles.phase("recorder"):
                ingest = await ingest_rate(broker, database_url, count)
            note = f"from its start; first rows after {ingest.first_row_s:.2f} s"
            print(line("recorder into Postgres, total", ingest.total, raw, note), flush=True)
            if ingest.steady is not None:
                note = (
                    "from the first rows seen to the last; the recorder waited "
                    f"{ingest.waited_s:.2f} s in all for its transactions"
                )
                print(line("recorder into Postgres, sustained", ingest.steady, raw, note))
            replayed, differ = await replay_rate(database_url)
            verdict = "every decision verified" if not differ else f"{differ} discrepancies"
            print(line("replay from Postgres + verify", replayed, raw, verdict), flush=True)
            with profiles.phase("replay + verify with signatures"):
                checked, wrong = await checked_replay_rate(database_url)
            verdict = "every signature and decision verified" if not wrong else f"{wrong} found"
            print(line("  + every signature checked", checked, raw, verdict), flush=True)
            differ += wrong
        finally:
            await drop_database(server, database_url)
    for report in profiles.reports:
        print(report)
    return 1 if differ else 0


def run(count: int, profile: bool = False) -> int:
    """The figures, with every event signed and checked as deployed (keys made for the run)."""
    principals = {"client": "client", "auctioneer": "auctioneer", "verifier": "verifier"}
    with run_keys(principals | {agent: "agent" for agent in AGENTS} | {"recorder": "recorder"}):
        return asyncio.run(main(count, profile))
