"""Addressed delivery (docs/delivery.md), through the real broker: an agent reads only its inbox
partition, decodes and verifies only what is addressed to it (its neighbours' records there are
skipped by header, unread), and a copy the auctioneer failed to send is sent again by its
successor."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from agents.runtime import AgentService
from agents.scripted_agent import ScriptedAgent
from marketplace.shared.bus import Letter, addressee, inbox_partition
from marketplace.shared.config import BrokerConfig
from marketplace.shared.offsets import highwater_marks
from schemas.codec import decode
from schemas.events import AuctionClosed, BidRequested, DeadLetter, TaskResult
from schemas.topics import Topics
from tests.integration.raw import capture
from tests.integration.test_auctioneer import Market, make_config, task
from tests.integration.test_lean_auctioneer import lean_config

pytestmark = pytest.mark.integration


def neighbours(broker: BrokerConfig, count: int = 2) -> list[str]:
    """Agent ids that share one inbox partition, cheapest first by name."""
    ids = [f"agent-{i}" for i in range(200)]
    home = inbox_partition(ids[0], broker.inbox_partitions)
    return [a for a in ids if inbox_partition(a, broker.inbox_partitions) == home][:count]


async def inbox_of(broker: BrokerConfig, topics: Topics, *agent_ids: str) -> list:
    """The inbox records keyed by the agents: (addressee, event type)."""
    records = []
    for agent_id in agent_ids:
        records += await capture(broker.bootstrap, [topics.inbox], agent_id.encode())
    return [(addressee(r.headers), decode(r.value).type) for r in records]


async def wait_consumed(service: AgentService, end: int) -> None:
    try:
        async with asyncio.timeout(30):
            while (service.consumer.next_offsets or {}).get(only(service)) != end:
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError((service.consumer.next_offsets, end)) from None


def only(service: AgentService) -> TopicPartition:
    [own] = service.consumer.assignment()
    return own


async def test_an_agent_decodes_nothing_addressed_to_its_neighbour(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """Lean: one agent is called for every task (its draft passes), its neighbour on the same
    inbox partition never. The neighbour decodes and verifies nothing at all, and skips every
    record; the called one checks exactly its own records: the task, the call, the award."""
    ids = neighbours(broker_config)
    agents = [ScriptedAgent(a, price=0.05 * (1 + i), mechanism="lean") for i, a in enumerate(ids)]
    async with Market(lean_config(broker_config)) as m:
        services = {a.agent_id: await m.agent(a) for a in agents}
        assert len({only(s) for s in services.values()}) == 1  # one partition
        await m.auctioneer()
        posted = [task() for _ in range(5)]
        for p in posted:
            await m.post(p)
        await m.watch.wait_until(lambda _: len(m.watch.of(TaskResult)) == len(posted), 60)
        [called_id] = {c.agent_id for c in m.watch.of(BidRequested)}
        [silent_id] = set(ids) - {called_id}
        called, silent = services[called_id], services[silent_id]
        records = await inbox_of(broker_config, topics, *ids)
        await wait_consumed(called, len(records))
        await wait_consumed(silent, len(records))
        marks = await highwater_marks(broker_config.bootstrap, topics.every())
    per_topic = {t.topic.removeprefix(topics.prefix): 0 for t in marks}
    for tp, mark in marks.items():
        per_topic[tp.topic.removeprefix(topics.prefix)] += mark
    print(f"records per lean auction, one agent called of two: {per_topic} / {len(posted)}")
    per_task = ["AuctionClosed", "BidRequested", "TaskPosted"]
    assert sorted(t for _, t in records) == sorted(per_task * len(posted))
    assert {to for to, _ in records} == {called_id}
    assert called.bus.checked == len(records) == 3 * len(posted)
    assert silent.bus.checked == 0  # not one decode, not one signature
    assert silent.consumer.skipped == len(records)
    assert silent.consumer.skipped_bytes > 0


async def test_paper_no_agent_decodes_another_agents_jury_call_or_award(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """Paper asks every agent to bid and judge, so both get the task, the opening and the
    jury; only the winner gets the award. Each checks exactly the records addressed to it and
    skips the other's, on the partition they share."""
    first_id, second_id = neighbours(broker_config)
    scores = {first_id: 4.0, second_id: 2.0}
    first = ScriptedAgent(first_id, price=0.05, scores=scores)
    second = ScriptedAgent(second_id, price=0.36, scores=scores)
    async with Market(make_config(broker_config)) as m:
        services = {first_id: await m.agent(first), second_id: await m.agent(second)}
        await m.auctioneer()
        posted = task()
        await m.post(posted)
        closed = await m.closed(posted.task_id)
        await m.watch.wait_until(lambda _: bool(m.about(posted.task_id, TaskResult)), 30)
        records = await inbox_of(broker_config, topics, first_id, second_id)
        for service in services.values():
            await wait_consumed(service, len(records))
    mine = {a: [t for to, t in records if to == a] for a in services}
    assert "JuryCalled" in mine[first_id] and "JuryCalled" in mine[second_id]
    assert [closed.winner_agent_id] == [a for a in mine if "AuctionClosed" in mine[a]]
    for agent_id, service in services.items():
        assert service.bus.checked == len(mine[agent_id]), agent_id
        assert service.consumer.skipped == len(records) - len(mine[agent_id]), agent_id


async def test_garbage_for_a_neighbour_is_skipped_and_garbage_for_itself_dead_lettered(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """The header check only skips others' records: a forged or unreadable record addressed
    to the agent is still read, refused and dead-lettered, like on any stream."""
    me_id, other_id = neighbours(broker_config)
    async with Market(lean_config(broker_config)) as m:
        service = await m.agent(ScriptedAgent(me_id, price=0.05, mechanism="lean"))
        forged = task("t-forged")
        producer = AIOKafkaProducer(bootstrap_servers=broker_config.bootstrap)
        await producer.start()
        try:
            for to, value in [
                (other_id, b"\xff garbage"),
                (other_id, forged.model_dump_json().encode()),
                (me_id, b"\xff garbage"),
                (me_id, forged.model_dump_json().encode()),  # unsigned
            ]:
                await producer.send_and_wait(
                    topics.inbox, value, key=to.encode(), headers=[("sale-to", to.encode())]
                )
        finally:
            await producer.stop()
        await m.watch.wait_until(lambda _: len(m.watch.of(DeadLetter)) >= 2, 30)
        await wait_consumed(service, 4)
        await asyncio.sleep(0.5)
    letters = m.watch.of(DeadLetter)
    assert len(letters) == 2
    assert {d.consumer_group for d in letters} == {f"{topics.prefix}agent.{me_id}"}
    assert {d.offset for d in letters} == {2, 3}  # its own two records, not its neighbour's
    assert service.bus.checked == 2 and service.consumer.skipped == 2


async def test_an_award_whose_copy_was_lost_is_copied_again_by_the_next_auctioneer(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """The first auctioneer decides the award, and fails to copy it to the winner's inbox
    (as if it crashed in between): it commits nothing more. The next one rebuilds the auction
    and copies the award again: the winner delivers, once."""
    agent_id = f"w-{uuid.uuid4().hex[:6]}"
    async with Market(lean_config(broker_config)) as m:
        await m.agent(ScriptedAgent(agent_id, price=0.05, mechanism="lean"))
        first = await m.auctioneer()
        copy_first = first.bus.send_copies

        async def but_the_award(letter: Letter) -> None:
            if decode(letter.value).type == "AuctionClosed":
                raise ConnectionError("the auctioneer crashed here")
            await copy_first(letter)

        first.bus.send_copies = but_the_award  # type: ignore[method-assign]
        posted = task()
        await m.post(posted)
        await m.closed(posted.task_id)
        _, _, running = m.auctioneers.pop()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(running, 30)
        assert m.about(posted.task_id, TaskResult) == []
        await m.auctioneer()
        await m.watch.wait_until(lambda _: bool(m.about(posted.task_id, TaskResult)), 30)
        await asyncio.sleep(1.0)  # a second delivery, were one coming
    [result] = m.about(posted.task_id, TaskResult)
    assert result.agent_id == agent_id
    assert len(m.about(posted.task_id, AuctionClosed)) == 1  # decided once
    copies = await inbox_of(broker_config, topics, agent_id)
    assert [t for to, t in copies if to == agent_id].count("AuctionClosed") == 1
