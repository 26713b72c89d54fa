"""Forgeries, as an attacker who can publish to the broker would send them, refused.

The attacker writes records straight to Kafka (a raw producer: no Bus, no key of the stack),
either unsigned, signed with a key of its own, or signed with a real agent's key for something
that agent may not say. Each test runs the real services on the real broker (and Postgres) and
asserts the forgery changed nothing. Written so the same attacks also run against the code
before signatures, where each of these tests fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.scripted_agent import ScriptedAgent
from marketplace.log.store import Incoming, Position, store
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig
from marketplace.shared.migrate import apply_migrations
from marketplace.shared.tokens import Tokenizers
from schemas.codec import encode
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidSubmitted,
    DeadLetter,
    Event,
    SearchChecks,
    TaskChecks,
    TaskOutcome,
    TaskResult,
)
from schemas.topics import Topics
from tests.integration.inbox import Inbox
from tests.integration.test_auctioneer import Market, make_config, task
from tests.integration.test_verifier import verifying
from tests.samples import every_event

try:
    from marketplace.shared import signing
    from marketplace.shared.config import SecurityConfig
    from marketplace.shared.keyfiles import ensure_keys, trust_of
except ImportError:  # the code before signatures: the same attacks, nothing to stop them
    signing = None  # type: ignore[assignment]

pytestmark = pytest.mark.integration

# The stack's principals and their real roles; the attacker holds none of these keys.
PRINCIPALS = {
    "auctioneer": "auctioneer",
    "verifier": "verifier",
    "recorder": "recorder",
    "client": "client",
    "watcher": "monitor",
    "a": "agent",
    "b": "agent",
}


@pytest.fixture
def keyring(tmp_path: Path) -> Iterator[Path]:
    """A keyring of real roles, installed for this test's processes; yields its file."""
    key_dir, path = tmp_path / "keys", tmp_path / "keys" / "keyring.toml"
    if signing is None:
        yield path
        return
    ensure_keys(PRINCIPALS, key_dir, path)
    before = signing.current()
    signing.install(trust_of(SecurityConfig(keyring=path, key_dir=key_dir)))
    yield path
    signing.install(before)


@pytest.fixture
async def market(broker_config: BrokerConfig, topics: Topics) -> AsyncIterator[Callable]:
    """Starts a paper-auction market (test_auctioneer's) on demand; stops it after the test."""
    markets: list[Market] = []

    async def start() -> Market:
        markets.append(await Market(make_config(broker_config)).__aenter__())
        return markets[-1]

    yield start
    for started in markets:
        await started.__aexit__()


def own_key() -> Ed25519PrivateKey:
    """A key the attacker made: in no keyring."""
    return Ed25519PrivateKey.generate()


def stolen_role(principal: str) -> object:
    """The real key of `principal` (an agent forging beyond its role)."""
    return signing.current().signer(principal) if signing is not None else None


async def forge(broker: BrokerConfig, event: Event, key: object = None) -> None:
    """Writes `event` to its topic as a raw record, signed with `key` if given."""
    headers = [("type", event.type.encode())]
    if signing is not None and key is not None:
        signer = key if isinstance(key, signing.Signer) else signing.Signer(event.producer, key)
        headers += [(k, v.encode()) for k, v in signer.headers(event).items()]
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        topic = Topics(broker.topic_prefix).for_event(event)
        await producer.send_and_wait(topic, encode(event), key=event.key.encode(), headers=headers)
    finally:
        await producer.stop()


def refused(inbox: Inbox, event: Event) -> list[DeadLetter]:
    """The dead letters that name `event`'s id: a forgery refused is on `dlq` with its reason."""
    return [d for d in inbox.of(DeadLetter) if str(event.event_id).encode() in d.raw_value]


def bid(task_id: str, agent_id: str, price: float) -> BidSubmitted:
    return BidSubmitted(
        producer=agent_id,
        task_id=task_id,
        agent_id=agent_id,
        model=f"scripted-{agent_id}",
        plan="FORGED: run this instead",
        plan_tokens=1,
        entropy=0.0,
        price=price,
    )


async def started(m: Market, *agents: ScriptedAgent) -> None:
    """An auctioneer and the agents, once its roster holds each of them live (or 10 s have
    passed: the code before the skew check never sees an agent evicted by the future)."""
    auctioneer = await m.auctioneer()
    for agent in agents:
        await m.agent(agent)
    async with asyncio.timeout(10):
        while not all(auctioneer.roster.is_live(a.agent_id, datetime.now(UTC)) for a in agents):
            await asyncio.sleep(0.05)


async def opened(m: object, task_id: str) -> AuctionOpened:
    await m.watch.wait_until(lambda _: bool(m.about(task_id, AuctionOpened)), 30)
    return m.about(task_id, AuctionOpened)[0]


# --- the auction --------------------------------------------------------------------------------


async def test_a_bid_under_a_real_agents_id_from_a_forged_key_does_not_count(
    market: Callable, keyring: Path
) -> None:
    m = await market()
    await started(m, ScriptedAgent("a", price=0.3, delay_s=1.0))  # the forgery arrives first
    posted = task()
    await m.post(posted)
    await opened(m, posted.task_id)
    forged = bid(posted.task_id, "a", price=0.0)
    await forge(m.config.broker, forged, own_key())
    closed = await m.closed(posted.task_id)
    assert forged.bid_id not in {b.bid_id for b in closed.bids}
    assert closed.winner_agent_id == "a" and closed.winner_bid_id != forged.bid_id
    assert "FORGED" not in closed.winning_plan
    letters = refused(m.watch, forged)
    assert letters and all("unknown key" in d.error for d in letters)


async def test_an_unregistered_agents_heartbeat_and_bid_are_refused(
    market: Callable, keyring: Path
) -> None:
    m = await market()
    ghost = ScriptedAgent("ghost", price=0.0)
    await forge(m.config.broker, ghost.heartbeat(), own_key())
    await started(m, ScriptedAgent("b", price=0.3, delay_s=0.5))
    posted = task()
    await m.post(posted)
    assert "ghost" not in (await opened(m, posted.task_id)).agents
    forged = bid(posted.task_id, "ghost", price=0.0)
    await forge(m.config.broker, forged)  # unsigned
    closed = await m.closed(posted.task_id)
    assert {b.agent_id for b in closed.bids} == {"b"}
    assert closed.winner_agent_id == "b"
    assert "unsigned" in refused(m.watch, forged)[0].error


async def test_a_forged_self_consistent_close_is_not_the_decision(
    market: Callable, keyring: Path
) -> None:
    m = await market()
    await started(m, ScriptedAgent("a", price=0.3, delay_s=1.0))
    posted = task()
    await m.post(posted)
    await opened(m, posted.task_id)
    forged = AuctionClosed(
        producer="auctioneer",
        task_id=posted.task_id,
        reason="awarded",
        winner_bid_id=uuid.uuid4(),
        winner_agent_id="a",
        winning_plan="FORGED: run this instead",
    )
    await forge(m.config.broker, forged, stolen_role("a"))  # a real agent's key, not its role
    closed = await m.closed(posted.task_id)
    assert closed.event_id != forged.event_id
    assert "FORGED" not in closed.winning_plan
    assert [c.event_id for c in m.about(posted.task_id, AuctionClosed)] == [closed.event_id]
    assert "may not produce AuctionClosed" in refused(m.watch, forged)[0].error


async def test_a_heartbeat_dated_far_ahead_neither_evicts_an_agent_nor_moves_time(
    market: Callable, keyring: Path
) -> None:
    m = await market()
    a = ScriptedAgent("a", price=0.3)
    ahead = a.heartbeat("left").model_copy(
        update={"occurred_at": datetime.now(UTC) + timedelta(days=1)}
    )
    async with Bus(m.config.broker, producer="a") as own:  # its own key: signed, and wrong
        await own.publish(ahead)
    with contextlib.suppress(TimeoutError):
        await started(m, a)
    posted = task()
    await m.post(posted)
    assert (await opened(m, posted.task_id)).agents == ["a"]
    closed = await m.closed(posted.task_id)
    assert closed.reason == "awarded" and closed.winner_agent_id == "a"


async def test_a_bid_priced_below_its_agents_registration_is_refused(
    market: Callable, keyring: Path
) -> None:
    m = await market()
    await started(m, ScriptedAgent("a", price=0.3, delay_s=1.0))
    posted = task()
    await m.post(posted)
    await opened(m, posted.task_id)
    lying = bid(posted.task_id, "a", price=0.0)  # a's own key: authentic, and underpriced
    async with Bus(m.config.broker, producer="a") as own:
        await own.publish(lying)
    closed = await m.closed(posted.task_id)
    assert lying.bid_id not in {b.bid_id for b in closed.bids}
    assert {(b.agent_id, b.price) for b in closed.bids} == {("a", 0.3)}
    assert closed.winner_agent_id == "a" and closed.winner_bid_id != lying.bid_id
    assert "registered at 0.3" in refused(m.watch, lying)[0].error


async def test_a_bid_that_understates_its_plan_or_its_model_is_refused(
    broker_config: BrokerConfig, topics: Topics, keyring: Path, tier_s: str
) -> None:
    """With the model's vocabulary at hand the auctioneer recounts a plan: a bid that says
    it took 1 token for a plan of dozens, or names a model its agent did not register, is
    refused; the agent's honest bid wins."""
    async with Market(make_config(broker_config)) as m:
        a = ScriptedAgent("a", price=0.3, delay_s=1.0, plan_tokens=40)
        auctioneer = await m.auctioneer(tokenizers=Tokenizers({a.llm.model: Path(tier_s)}))
        await m.agent(a)
        async with asyncio.timeout(10):
            while not auctioneer.roster.is_live("a", datetime.now(UTC)):
                await asyncio.sleep(0.05)
        posted = task()
        await m.post(posted)
        await opened(m, posted.task_id)
        short = bid(posted.task_id, "a", price=0.3).model_copy(
            update={"plan": "FORGED: " + "run this program instead of the task, " * 8}
        )
        renamed = bid(posted.task_id, "a", price=0.3).model_copy(update={"model": "gpt-9"})
        async with Bus(m.config.broker, producer="a") as own:  # a's own key: authentic, and lying
            await own.publish(short)
            await own.publish(renamed)
        closed = await m.closed(posted.task_id)
    assert {b.plan_tokens for b in closed.bids} == {40}
    assert "the bid says 1, its plan holds" in refused(m.watch, short)[0].error
    assert "registered as scripted-a" in refused(m.watch, renamed)[0].error


# --- grading ------------------------------------------------------------------------------------


async def test_a_forged_passing_outcome_is_refused_and_the_verifier_still_grades(
    broker_config: BrokerConfig, topics: Topics, keyring: Path
) -> None:
    watch = Inbox()
    watcher = Bus(broker_config, producer="watcher")
    watcher.subscribe(["outcomes", "dlq"], f"watch-{uuid.uuid4().hex[:6]}", watch)
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    forged = TaskOutcome(producer="verifier", task_id=task_id, passed=True, score=1.0)
    checks = TaskChecks(producer="client", task_id=task_id, checks=SearchChecks(answers=["Paris"]))
    wrong = TaskResult(
        producer="a", task_id=task_id, agent_id="a", bid_id=uuid.uuid4(), output="London"
    )
    award = AuctionClosed(
        producer="auctioneer",
        task_id=task_id,
        reason="awarded",
        winner_agent_id="a",
        winner_bid_id=wrong.bid_id,
    )
    async with (
        watcher,
        Bus(broker_config, "client") as client,
        Bus(broker_config, "a") as agent,
        Bus(broker_config, "auctioneer") as auctioneer,
    ):
        await watcher.joined()
        await forge(broker_config, forged, own_key())
        async with verifying(broker_config):
            await client.publish(checks)
            await auctioneer.publish(award)  # the verifier grades an award's result only
            await agent.publish(wrong)
            await watch.wait_until(lambda es: any(isinstance(e, TaskOutcome) for e in es), 30)
            await asyncio.sleep(0.5)  # anything else on its way
    outcomes = watch.of(TaskOutcome)
    assert [o.passed for o in outcomes] == [False]
    assert outcomes[0].event_id != forged.event_id
    assert refused(watch, forged)


# --- the log ------------------------------------------------------------------------------------


async def test_replay_verify_names_a_forged_event_in_the_log(
    fresh_database: str, keyring: Path, tmp_path: Path
) -> None:
    posted = task()
    forged = AuctionClosed(producer="auctioneer", task_id=posted.task_id, reason="no_bids")
    genuine = Incoming.of(Position("sale.tasks", 0, 0), b"k", posted)
    if signing is not None:
        headers = signing.current().signer("client").headers(posted)
        signature = base64.b64decode(headers[signing.SIGNATURE_HEADER])
        genuine = Incoming.of(
            genuine.position, b"k", posted, headers[signing.KEY_ID_HEADER], signature
        )
    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
        await store(conn, [genuine, Incoming.of(Position("sale.auctions", 0, 0), b"k", forged)])
    finally:
        await conn.close()
    config = tmp_path / "sale.toml"
    config.write_text(f'[database]\nurl = "{fresh_database}"\n')
    env = {**os.environ, "SALE_KEYRING": str(keyring), "DATABASE_URL": fresh_database}
    env.pop("SALE_KEY_DIR", None)
    command = [sys.executable, "-m", "marketplace.app.cli", "--config", str(config)]
    done = subprocess.run(
        [*command, "replay", "--verify"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"AuctionClosed {forged.event_id}: signature: unsigned record" in done.stdout
    assert str(posted.event_id) not in done.stdout
    assert "every decision verified" not in done.stdout


async def test_genuine_events_holding_maps_of_several_keys_verify_from_the_log(
    fresh_database: str, keyring: Path
) -> None:
    """The log keeps each event's text as recorded: stored as jsonb, whose keys come back
    re-ordered, a genuine close with a jury of two was re-encoded unlike what was signed and
    `sale replay --verify` called it forged."""
    if signing is None:
        pytest.skip("the code before signatures stores no signature to check")
    from marketplace.log import provenance

    closed = next(e for e in every_event("ml-0") if isinstance(e, AuctionClosed))
    assert list(closed.bids[0].jury) == ["small", "large"]  # not the order jsonb keeps
    headers = signing.current().signer("auctioneer").headers(closed)
    signature = base64.b64decode(headers[signing.SIGNATURE_HEADER])
    row = Incoming.of(
        Position("sale.auctions", 0, 0), b"k", closed, headers[signing.KEY_ID_HEADER], signature
    )
    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
        await store(conn, [row])
    finally:
        await conn.close()
    log, found = await provenance.read_checked(fresh_database, signing.current().keyring)
    assert found == [] and log.events == [closed]


# --- revocation ---------------------------------------------------------------------------------


def graded_task(agent: str, answer: str) -> tuple[TaskChecks, AuctionClosed, TaskResult]:
    """A search task's checks, its award to `agent` and the agent's result."""
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    bid_id = uuid.uuid4()
    checks = TaskChecks(producer="client", task_id=task_id, checks=SearchChecks(answers=["Paris"]))
    award = AuctionClosed(
        producer="auctioneer",
        task_id=task_id,
        reason="awarded",
        winner_bid_id=bid_id,
        winner_agent_id=agent,
        winning_plan="answer",
    )
    result = TaskResult(
        producer=agent, task_id=task_id, agent_id=agent, bid_id=bid_id, output=answer
    )
    return checks, award, result


async def test_a_removed_key_stops_counting_in_running_services_without_a_restart(
    broker_config: BrokerConfig, topics: Topics, keyring: Path, fresh_database: str
) -> None:
    """Issue 24: after `sale keys remove`, a running verifier and recorder still accepted and
    graded results signed with the key (two tasks passed) until they were restarted."""
    from marketplace.shared.keyfiles import read_keyring, remove_public
    from tests.integration.test_recorder import recording

    watch = Inbox()
    watcher = Bus(broker_config, producer="watcher")
    watcher.subscribe(["outcomes", "dlq"], f"watch-{uuid.uuid4().hex[:6]}", watch)
    before, after = graded_task("a", "Paris"), graded_task("a", "Paris")
    [key] = [k for k in read_keyring(keyring) if k.principal == "a"]
    async with (
        watcher,
        Bus(broker_config, "client") as client,
        Bus(broker_config, "auctioneer") as auctioneer,
        Bus(broker_config, "a") as agent,
        verifying(broker_config),
        recording(broker_config, fresh_database),
    ):
        await watcher.joined()
        for bus, event in zip((client, auctioneer, agent), before, strict=True):
            await bus.publish(event)
        await watch.wait_until(lambda es: any(isinstance(e, TaskOutcome) for e in es), 30)
        removed = remove_public(keyring, key.key_id)
        await asyncio.sleep(signing.REFRESH_S + 0.5)
        for bus, event in zip((client, auctioneer, agent), after, strict=True):
            await bus.publish(event)
        await watch.wait_until(lambda _: len(refused(watch, after[2])) >= 2, 30)  # both services
        await asyncio.sleep(1.0)  # anything else on its way
    outcomes = {o.task_id: o for o in watch.of(TaskOutcome)}
    assert outcomes[before[0].task_id].passed is True
    assert after[0].task_id not in outcomes
    assert all(f"key {key.key_id} (a) was removed at" in d.error for d in refused(watch, after[2]))
    stored = await fetch_rows(
        fresh_database, "SELECT event_id FROM events WHERE type = 'TaskResult'"
    )
    assert [r["event_id"] for r in stored] == [before[2].event_id]
    assert removed is not None


async def fetch_rows(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def test_replay_verify_believes_a_removed_key_before_its_removal_and_names_it_after(
    fresh_database: str, keyring: Path, tmp_path: Path
) -> None:
    """Issue 24: after a key's removal, `replay --verify` called every earlier, legitimate event
    of it "unknown key". Each event is judged by the key's validity when the log stored it."""
    from marketplace.shared.keyfiles import read_keyring, remove_public

    [key] = [k for k in read_keyring(keyring) if k.principal == "a"]
    early, late = graded_task("a", "Paris")[2], graded_task("a", "Paris")[2]

    def row(offset: int, event: TaskResult) -> Incoming:
        headers = signing.current().signer("a").headers(event)
        signature = base64.b64decode(headers[signing.SIGNATURE_HEADER])
        position = Position("sale.results", 0, offset)
        return Incoming.of(position, b"k", event, headers[signing.KEY_ID_HEADER], signature)

    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
        await store(conn, [row(0, early)])
        remove_public(keyring, key.key_id)
        await store(conn, [row(1, late)])  # stored after the removal: recorded_at says so
    finally:
        await conn.close()
    config = tmp_path / "sale.toml"
    config.write_text(f'[database]\nurl = "{fresh_database}"\n')
    env = {**os.environ, "SALE_KEYRING": str(keyring), "DATABASE_URL": fresh_database}
    env.pop("SALE_KEY_DIR", None)
    command = [sys.executable, "-m", "marketplace.app.cli", "--config", str(config)]
    done = subprocess.run(
        [*command, "replay", "--verify"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"TaskResult {late.event_id}: signature: key {key.key_id} (a) was removed" in done.stdout
    assert str(early.event_id) not in done.stdout
