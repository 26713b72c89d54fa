"""`sale loadtest --scale-out N`: the auction machinery shared among processes, each auction
decided once and each event recorded once.

Eight partitions; three `sale auctioneer` and two `sale recorder` processes in their consumer
groups, joining one after another (so the groups rebalance while the first tasks come); three
scripted agents in a process of their own, the client in this one. N tasks are posted, at most
`IN_FLIGHT` open at once. Once every auction has closed, the agents leave, the auctioneers
stop, and the recorders are given time to record everything before they stop too. Then the
counts, read back from Kafka and from Postgres: the `AuctionClosed` records of each task (one
each, in both), the records in Kafka against the rows in Postgres (equal, no position and no
event id twice), and how many auctions each auctioneer process closed (from its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from marketplace.performance import loadtest
from marketplace.shared.admin import ensure_topics
from marketplace.shared.bus import from_start, reader
from marketplace.shared.config import BrokerConfig
from marketplace.shared.database import create_database, drop_database, resolve_server
from marketplace.shared.keyfiles import run_keys
from marketplace.shared.local_broker import LocalBroker
from marketplace.shared.offsets import highwater_marks
from schemas.codec import EventDecodeError, decode
from schemas.events import AuctionClosed, Mechanism
from schemas.topics import STREAMS, Topics

PARTITIONS = 8
AUCTIONEERS = 3
RECORDERS = 2
AGENTS = 3
IN_FLIGHT = 64
RECORDED_WITHIN_S = 120.0


@dataclass(frozen=True)
class Counts:
    tasks: int
    closed_in_kafka: Counter[str]  # task id → AuctionClosed records
    closed_in_postgres: Counter[str]
    kafka_records: int  # every record on every topic of the run
    postgres_rows: int
    distinct_positions: int  # (topic, partition, offset) in Postgres
    distinct_events: int  # event ids in Postgres
    closed_by: list[int]  # auctions each auctioneer process closed, by its log

    @staticmethod
    def _once(closed: Counter[str], tasks: int) -> str:
        once = sum(1 for n in closed.values() if n == 1)
        more = sum(1 for n in closed.values() if n > 1)
        none = tasks - len(closed)
        return f"{once}/{tasks} tasks with exactly one ({more} with more, {none} with none)"

    def lines(self) -> list[str]:
        return [
            f"AuctionClosed in Kafka:    {self._once(self.closed_in_kafka, self.tasks)}",
            f"AuctionClosed in Postgres: {self._once(self.closed_in_postgres, self.tasks)}",
            f"events: {self.kafka_records} records in Kafka, {self.postgres_rows} rows in "
            f"Postgres ({self.distinct_positions} distinct positions, {self.distinct_events} "
            "distinct event ids)",
            "auctions closed by each auctioneer process: "
            + ", ".join(str(n) for n in self.closed_by),
        ]


def shared_services(database_url: str, logs: Path) -> loadtest.Services:
    """Three auctioneers and two recorders; on the way out the auctioneers stop first, then
    the recorders once they have recorded every record in Kafka."""

    @contextlib.asynccontextmanager
    async def start(
        broker: BrokerConfig, workdir: Path, mechanism: Mechanism
    ) -> AsyncIterator[dict[str, int]]:
        with contextlib.ExitStack() as recorders:
            pids: dict[str, int] = {}
            for i in range(RECORDERS):
                process = recorders.enter_context(
                    loadtest.service_process(
                        broker,
                        workdir,
                        "recorder",
                        log=logs / f"recorder{i}.log",
                        mechanism=mechanism,
                        env={"DATABASE_URL": database_url},
                    )
                )
                pids[f"recorder{i}"] = process.pid
            with contextlib.ExitStack() as auctioneers:
                for i in range(AUCTIONEERS):
                    log = logs / f"auctioneer{i}.log"
                    process = auctioneers.enter_context(
                        loadtest.service_process(
                            broker,
                            workdir,
                            admission=loadtest.UNBOUNDED,
                            log=log,
                            mechanism=mechanism,
                        )
                    )
                    pids[f"auctioneer{i}"] = process.pid
                yield pids
            await recorded(broker, database_url)

    return start


async def kafka_records(broker: BrokerConfig) -> int:
    topics = Topics(broker.topic_prefix)
    return sum(
        (await highwater_marks(broker.bootstrap, [getattr(topics, s) for s in STREAMS])).values()
    )


async def recorded(broker: BrokerConfig, database_url: str) -> None:
    """Waits (a while) until Postgres holds as many events as Kafka has records."""
    deadline = time.monotonic() + RECORDED_WITHIN_S
    conn = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < deadline:
            if await conn.fetchval("SELECT count(*) FROM events") >= await kafka_records(broker):
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def closed_in_kafka(broker: BrokerConfig) -> Counter[str]:
    consumer = await reader(broker)
    try:
        await from_start(consumer, [Topics(broker.topic_prefix).auctions])
        closed: Counter[str] = Counter()
        left = await highwater_marks(broker.bootstrap, [Topics(broker.topic_prefix).auctions])
        while [tp for tp, end in left.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    with contextlib.suppress(EventDecodeError):
                        event = decode(record.value or b"")
                        if isinstance(event, AuctionClosed):
                            closed[event.task_id] += 1
        return closed
    finally:
        await consumer.stop()


async def count(broker: BrokerConfig, database_url: str, tasks: int, logs: Path) -> Counts:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT task_id, count(*) AS n FROM events"
            " WHERE type = 'AuctionClosed' GROUP BY task_id"
        )
        totals = await conn.fetchrow(
            'SELECT count(*) AS rows, count(DISTINCT (topic, partition, "offset")) AS positions,'
            " count(DISTINCT event_id) AS events FROM events"
        )
    finally:
        await conn.close()
    in_postgres = Counter({r["task_id"]: r["n"] for r in rows if r["task_id"].startswith("lt-")})
    in_kafka = await closed_in_kafka(broker)
    return Counts(
        tasks=tasks,
        closed_in_kafka=Counter({t: n for t, n in in_kafka.items() if t.startswith("lt-")}),
        closed_in_postgres=in_postgres,
        kafka_records=await kafka_records(broker),
        postgres_rows=totals["rows"],
        distinct_positions=totals["positions"],
        distinct_events=totals["events"],
        closed_by=[
            (logs / f"auctioneer{i}.log").read_text().count(" closed: ") for i in range(AUCTIONEERS)
        ],
    )


async def main(tasks: int) -> None:
    url = os.environ.get("DATABASE_URL", "")
    with contextlib.ExitStack() as stack:
        local = None if os.environ.get("KAFKA_BOOTSTRAP") else stack.enter_context(LocalBroker())
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP") or local.bootstrap
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "postgres"
        server = stack.enter_context(resolve_server(url, data_dir, probe_local=True))
        database_url = await create_database(server, prefix="sale_scaleout")
        try:
            broker = loadtest.market(bootstrap).model_copy(update={"partitions": PARTITIONS})
            await ensure_topics(broker)
            print(
                f"broker {bootstrap}; {os.cpu_count()} CPUs; {PARTITIONS} partitions; "
                f"{AUCTIONEERS} auctioneer and {RECORDERS} recorder processes; {AGENTS} scripted "
                f"agents; {tasks} tasks, at most {IN_FLIGHT} in flight",
                flush=True,
            )
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            row = await loadtest.auction_rate(
                broker,
                AGENTS,
                tasks,
                IN_FLIGHT,
                broker_pid=local.pid if local else None,
                services=shared_services(database_url, logs),
                mechanism="paper",
            )
            print(f"auctions: {row}", flush=True)
            for line in (await count(broker, database_url, tasks, logs)).lines():
                print(line, flush=True)
        finally:
            await drop_database(server, database_url)


def run(tasks: int) -> int:
    """Every event signed and checked, as deployed, with keys made for the run."""
    with run_keys(loadtest.principals(AGENTS) | {"recorder": "recorder"}):
        asyncio.run(main(tasks))
    return 0
