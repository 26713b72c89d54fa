"""Replays: a captured signed record sent again, as anyone who can read the topics can. Every
consumer handles an event id once, so a replay changes nothing: no model call, no new bid or
result, no new row in the log or its projections, no new cost (docs/security.md, "Replays").

Each test runs real services on the real broker and Postgres, captures every record of a task
as the services published it (headers, so signatures, included), and the copies of them in the
agents' inboxes, sends them all again, waits until every consumer has read them, and counts
before and after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import TopicPartition

from agents.runtime import AgentService
from agents.scripted_agent import ScriptedAgent
from marketplace.client import lookup
from marketplace.evaluation.datasets import humaneval
from marketplace.services import auctioneer as auctioneer_service
from marketplace.shared.bus import Bus, inbox_partition
from marketplace.shared.config import BrokerConfig, Config, DatabaseConfig
from marketplace.shared.offsets import committed_offsets, highwater_marks
from schemas.codec import decode
from schemas.events import (
    AuctionClosed,
    BidRequested,
    DeadLetter,
    JuryCalled,
    RefinementCalled,
    TaskChecks,
    TaskOutcome,
    TaskPosted,
    TaskResult,
)
from schemas.topics import STREAMS, Topics
from tests.integration.raw import Captured, capture, send_again
from tests.integration.test_auctioneer import Market, make_config
from tests.integration.test_lean_auctioneer import lean_config
from tests.integration.test_recorder import recording, wait_for_lag_zero
from tests.integration.test_verifier import verifying

pytestmark = pytest.mark.integration

TABLES = ("events", "spend", "auctions", "bids", "reviews", "rejections", "results", "outcomes")


# --- counting ---------------------------------------------------------------------------------


async def rows(database: str) -> dict[str, int]:
    conn = await asyncpg.connect(database)
    try:
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
        # the agents' heartbeats go on being recorded every few seconds, replay or not
        beats = "SELECT count(*) FROM events WHERE type = 'AgentHeartbeat'"
        return counts | {"events": counts["events"] - await conn.fetchval(beats)}
    finally:
        await conn.close()


def model_calls(*agents: ScriptedAgent) -> dict[str, int]:
    return {a.agent_id: len(a.llm.calls) for a in agents}


async def consumed(broker: BrokerConfig, topics: Topics, group: str, streams: tuple) -> None:
    """Waits until `group` has committed every record of `streams`: it has read the replays."""
    names = [getattr(topics, s) for s in streams]
    ends = await highwater_marks(broker.bootstrap, names)
    await committed(broker, topics.prefix + group, ends)


async def agent_consumed(broker: BrokerConfig, topics: Topics, agent_id: str) -> None:
    """Waits until the agent has committed every record of its inbox partition."""
    own = TopicPartition(topics.inbox, inbox_partition(agent_id, broker.inbox_partitions))
    ends = await highwater_marks(broker.bootstrap, [topics.inbox])
    await committed(broker, f"{topics.prefix}agent.{agent_id}", {own: ends[own]})


async def committed(broker: BrokerConfig, group: str, ends: dict[TopicPartition, int]) -> None:
    """Waits until `group` has committed up to `ends`; generous, for a busy machine (a whole
    suite's run once took the recorder over a minute to commit a replay it had stored)."""
    async with asyncio.timeout(180):
        while True:
            done = await committed_offsets(broker.bootstrap, group, list(ends))
            if all(end == 0 or done.get(tp) == end for tp, end in ends.items()):
                return
            await asyncio.sleep(0.2)


async def inbox_copies(
    broker: BrokerConfig, topics: Topics, agent_id: str, task_id: str
) -> list[Captured]:
    """The copies of the task's records in the agent's inbox, as the auctioneer sent them."""
    records = await capture(broker.bootstrap, [topics.inbox], agent_id.encode())
    return [r for r in records if decode(r.value).task_id == task_id]


async def replayed(
    broker: BrokerConfig, topics: Topics, task_id: str, groups: dict[str, tuple], agents: tuple
) -> list[Captured]:
    """Sends every record of the task again, as published, and its copies in the inboxes of
    `agents`; returns once each of `groups` (name → the streams it reads) and each agent has
    read them all."""
    records = await capture(broker.bootstrap, topics.all(), task_id.encode())
    for agent in agents:
        records += await inbox_copies(broker, topics, agent.agent_id, task_id)
    assert any(r.topic == topics.inbox for r in records)
    await send_again(broker.bootstrap, records)
    for group, streams in groups.items():
        await consumed(broker, topics, group, streams)
    for agent in agents:
        await agent_consumed(broker, topics, agent.agent_id)
    await asyncio.sleep(1.0)  # an answer to a replay, were one coming, is published by now
    return records


def types(records: list[Captured], topics: Topics) -> set[str]:
    return {decode(r.value).type for r in records if r.topic != topics.dlq}


@contextlib.asynccontextmanager
async def stack(
    config: Config, topics: Topics, database: str, *agents: ScriptedAgent
) -> AsyncIterator[Market]:
    """Recorder, verifier, auctioneer and `agents`, in this process."""
    async with (
        recording(config.broker, database) as recorder,
        verifying(config.broker),
        Market(config) as m,
    ):
        for agent in agents:
            await m.agent(agent)
        await m.auctioneer()
        m.recorder = recorder  # type: ignore[attr-defined]
        yield m


async def settle(m: Market, topics: Topics, database: str, task_id: str) -> None:
    """Waits until the task has its outcome and the recorder has caught up."""
    await m.watch.wait_until(lambda _: bool(m.about(task_id, TaskResult)), 60)
    async with asyncio.timeout(60):
        while not (await rows(database))["outcomes"]:
            await asyncio.sleep(0.2)
    await wait_for_lag_zero(m.config.broker, topics, lambda: not m.recorder.done())


def humaneval_task() -> tuple[TaskPosted, TaskChecks]:
    [(posted, checks)] = humaneval(0, 1)
    return posted, checks


def groups() -> dict[str, tuple]:
    return {"verifier": ("checks", "results", "outcomes"), "recorder": STREAMS}


# --- the tests --------------------------------------------------------------------------------


async def test_replaying_a_lean_task_record_by_record_changes_nothing(
    broker_config: BrokerConfig, topics: Topics, fresh_database: str
) -> None:
    """TaskPosted, TaskChecks, AuctionOpened, BidRequested (×2), BidSubmitted (×2),
    AuctionClosed, TaskResult, TaskOutcome and the heartbeats' partition mates, all sent again
    under their own signatures: no draft, no delivery, no row, no cost."""
    small = ScriptedAgent("small", price=0.05, mechanism="lean", draft_passes=False)
    large = ScriptedAgent("large", price=0.36, mechanism="lean")
    config = lean_config(broker_config)
    posted, checks = humaneval_task()
    async with stack(config, topics, fresh_database, small, large) as m:
        await m.post(posted)
        await m.client.publish(checks)
        await settle(m, topics, fresh_database, posted.task_id)
        assert [c.agent_id for c in m.about(posted.task_id, BidRequested)] == ["small", "large"]
        before = await rows(fresh_database), model_calls(small, large)
        cost = await task_cost(config, fresh_database, posted.task_id)

        records = await replayed(broker_config, topics, posted.task_id, groups(), (small, large))
        await wait_for_lag_zero(broker_config, topics, lambda: not m.recorder.done())
        after = await rows(fresh_database), model_calls(small, large)
    replays = types(records, topics)
    assert {"BidRequested", "AuctionClosed", "TaskResult", "TaskOutcome"} <= replays
    assert {"TaskPosted", "TaskChecks", "BidSubmitted"} <= replays
    copied = types([r for r in records if r.topic == topics.inbox], topics)
    assert copied == {"TaskPosted", "BidRequested", "AuctionClosed"}  # what the agents read
    assert after == before  # no model call, no row in the log or any projection
    assert len(m.about(posted.task_id, TaskResult)) == 2  # the original, and its replay
    assert len({r.event_id for r in m.about(posted.task_id, TaskResult)}) == 1
    assert await task_cost(config, fresh_database, posted.task_id) == cost  # `sale result`


async def test_replaying_a_paper_task_with_jury_and_refinement_changes_nothing(
    broker_config: BrokerConfig, topics: Topics, fresh_database: str
) -> None:
    """The paper auction's calls: TaskPosted (a call for plans), JuryCalled (twice),
    RefinementCalled, the award, the reviews and the executed result, all sent again."""
    scores = {"large": 4.0, "small:0": 1.0, "small:1": 5.0}
    small = ScriptedAgent("small", price=0.05, scores=scores, refined_plan_tokens=60)
    large = ScriptedAgent("large", price=0.36, scores=scores)
    config = make_config(broker_config)
    posted, checks = humaneval_task()
    async with stack(config, topics, fresh_database, small, large) as m:
        await m.post(posted)
        await m.client.publish(checks)
        closed = await m.closed(posted.task_id)
        assert closed.reason == "refined" and closed.winner_agent_id == "small"
        await settle(m, topics, fresh_database, posted.task_id)
        before = await rows(fresh_database), model_calls(small, large)
        cost = await task_cost(config, fresh_database, posted.task_id)
        assert cost > 0

        records = await replayed(broker_config, topics, posted.task_id, groups(), (small, large))
        await wait_for_lag_zero(broker_config, topics, lambda: not m.recorder.done())
        after = await rows(fresh_database), model_calls(small, large)
    replays = types(records, topics)
    expected = {"TaskPosted", "JuryCalled", "RefinementCalled", "ReviewSubmitted"}
    assert expected | {"AuctionClosed", "TaskResult", "TaskOutcome"} <= replays
    copied = types([r for r in records if r.topic == topics.inbox], topics)
    assert copied == {"TaskPosted", "AuctionOpened", "JuryCalled", "RefinementCalled"} | {
        "AuctionClosed"
    }
    assert after == before
    assert len({r.event_id for r in m.about(posted.task_id, TaskResult)}) == 1
    assert await task_cost(config, fresh_database, posted.task_id) == cost


async def test_a_restarted_agent_still_refuses_what_it_answered_before(
    broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    """The ids answered outlive the process: a new agent process (the same state file) given
    the first one's call and award again drafts nothing and delivers nothing."""
    state = tmp_path / "agents" / "small.handled"
    config = lean_config(broker_config)
    posted, _ = humaneval_task()
    async with Market(config) as m:
        first = ScriptedAgent("small", price=0.05, mechanism="lean")
        service = await started(m, first, state)
        await m.auctioneer()
        await m.post(posted)
        await m.watch.wait_until(lambda _: bool(m.about(posted.task_id, TaskResult)), 60)
        await agent_consumed(broker_config, topics, "small")
        await service.stop()
        assert len(first.llm.calls) == 1 and state.exists()

        second = ScriptedAgent("small", price=0.05, mechanism="lean")
        service = await started(m, second, state)
        try:
            answers = await replay_calls(broker_config, topics, posted.task_id)
            assert {type(e) for e in answers} == {BidRequested, AuctionClosed}
            await agent_consumed(broker_config, topics, "small")
            await asyncio.sleep(1.0)
        finally:
            await service.stop()
    assert second.llm.calls == []  # no draft
    assert len({r.event_id for r in m.about(posted.task_id, TaskResult)}) == 1  # no delivery


async def started(m: Market, agent: ScriptedAgent, state: Path) -> AgentService:
    service = AgentService(agent, Bus(m.config.broker, producer=agent.agent_id), state=state)
    await service.start()
    await service.bus.joined()
    return service


async def replay_calls(broker: BrokerConfig, topics: Topics, task_id: str) -> list:
    """Sends the task's calls and award to `small` again, as its inbox had them; returns them."""
    records = await inbox_copies(broker, topics, "small", task_id)
    calls = [
        r
        for r in records
        if isinstance(decode(r.value), BidRequested | AuctionClosed | JuryCalled | RefinementCalled)
    ]
    await send_again(broker.bootstrap, calls)
    return [decode(r.value) for r in calls]


async def task_cost(config: Config, database: str, task_id: str) -> float:
    """What `sale result` says the task cost (it reads the log in Postgres)."""
    with_db = config.model_copy(update={"database": DatabaseConfig(url=database)})
    outcome = await lookup.result(with_db, task_id)
    assert outcome is not None
    return outcome.cost


async def test_a_task_replayed_after_its_auction_is_forgotten_is_not_auctioned_again(
    broker_config: BrokerConfig, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The auctioneer forgets a closed auction after `CLOSED_RETENTION`; the task sent again
    after that is dead-lettered as decided, not auctioned again (no call, no second award)."""
    monkeypatch.setattr(auctioneer_service, "CLOSED_RETENTION", timedelta(seconds=1))
    small = ScriptedAgent("small", price=0.05, mechanism="lean")
    posted, _ = humaneval_task()
    async with Market(lean_config(broker_config)) as m:
        await m.agent(small)
        auctioneer = await m.auctioneer()
        await m.post(posted)
        await m.closed(posted.task_id)
        async with asyncio.timeout(30):
            while posted.task_id not in auctioneer._decided:
                await asyncio.sleep(0.1)
        [task_record] = [
            r
            for r in await capture(broker_config.bootstrap, [topics.tasks], posted.task_id.encode())
        ]
        await send_again(broker_config.bootstrap, [task_record])
        await m.watch.wait_until(lambda _: bool(m.watch.of(DeadLetter)), 30)
        await agent_consumed(broker_config, topics, "small")
        await asyncio.sleep(1.0)
    [letter] = m.watch.of(DeadLetter)
    assert letter.error == f"task_id {posted.task_id} was already decided"
    assert len(m.about(posted.task_id, BidRequested)) == 1
    assert len(m.about(posted.task_id, AuctionClosed)) == 1
    assert len(small.llm.calls) == 1


async def test_a_restarted_verifier_does_not_grade_a_replayed_task_again(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """A verifier remembered its decided tasks in memory only: restarted, it resumed past the
    outcome, and a replay of the task's checks, award and result opened the task again and
    graded it a second time. It reads its partitions' last outcomes back when they are
    assigned."""
    from tests.integration.inbox import Inbox
    from tests.integration.test_signing import graded_task

    checks, award, result = graded_task("a", "Paris")
    watch = Inbox()
    watcher = Bus(broker_config, producer="watcher")
    watcher.subscribe(["outcomes"], "watch-replays", watch)
    async with (
        watcher,
        Bus(broker_config, "client") as client,
        Bus(broker_config, "auctioneer") as auctioneer,
        Bus(broker_config, "a") as agent,
    ):
        await watcher.joined()
        async with verifying(broker_config):
            for bus, event in ((client, checks), (auctioneer, award), (agent, result)):
                await bus.publish(event)
            await watch.wait_until(lambda es: len(es) >= 1, 30)
        streams = [topics.checks, topics.auctions, topics.results]
        records = await capture(broker_config.bootstrap, streams, checks.task_id.encode())
        assert {decode(r.value).type for r in records} == {
            "TaskChecks",
            "AuctionClosed",
            "TaskResult",
        }
        async with verifying(broker_config):  # a new process: nothing in memory
            await send_again(broker_config.bootstrap, records)
            await consumed(broker_config, topics, "verifier", ("checks", "results", "auctions"))
            await asyncio.sleep(1.0)  # an outcome, were one coming, is published by now
    outcomes = [e for e in watch.of(TaskOutcome) if e.task_id == checks.task_id]
    assert len(outcomes) == 1 and outcomes[0].passed is True, [o.event_id for o in outcomes]


async def test_a_restarted_auctioneer_does_not_auction_a_replayed_task_again(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """The auctioneer remembered decided tasks in memory only: restarted after the task's
    offsets were committed past, it would auction a replayed `TaskPosted` again. It reads back
    its partitions' last closes when they are assigned."""
    small = ScriptedAgent("small", price=0.05, mechanism="lean")
    posted, _ = humaneval_task()
    async with Market(lean_config(broker_config)) as m:
        await m.agent(small)
        await m.auctioneer()
        await m.post(posted)
        await m.closed(posted.task_id)
        await consumed(broker_config, topics, "auctioneer", ("tasks", "auctions"))
        _, stop, running = m.auctioneers.pop()
        stop.set()
        await running  # a clean stop: everything decided is committed
        [task_record] = await capture(
            broker_config.bootstrap, [topics.tasks], posted.task_id.encode()
        )
        await m.auctioneer()  # a new process: nothing in memory
        await send_again(broker_config.bootstrap, [task_record])
        await consumed(broker_config, topics, "auctioneer", ("tasks",))
        await asyncio.sleep(2.0)  # a call or an award, were one coming, is published by now
    # read while catching up, it is dropped as closed before the start; read after, it is
    # dead-lettered as decided: either way, never auctioned again
    assert all("already decided" in d.error for d in m.watch.of(DeadLetter))
    assert len(m.about(posted.task_id, BidRequested)) == 1
    assert len(m.about(posted.task_id, AuctionClosed)) == 1
    assert len(small.llm.calls) == 1
