"""Events through the real broker: every type comes back equal; bad records go to the DLQ."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from marketplace.shared.bus import Bus, Delivery, PartitionedConsumer, Source
from marketplace.shared.config import BrokerConfig
from marketplace.shared.offsets import committed_offsets
from schemas.codec import decode, encode
from schemas.events import DeadLetter, Event
from schemas.topics import STREAMS, Topics
from tests.integration.inbox import Inbox
from tests.integration.raw import publish_raw
from tests.samples import BIG_GARBAGE, every_event, huge_task


async def test_every_event_type_travels_and_comes_back_equal(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    inbox = Inbox()
    sent = every_event(task_id=f"task-{uuid.uuid4().hex[:6]}")
    bus = Bus(broker_config, producer="test")
    bus.subscribe(list(STREAMS), "everything", inbox)
    async with bus:
        for event in sent:
            await bus.publish(event)
        received = await inbox.wait_for(len(sent))
    assert sorted(received, key=lambda e: str(e.event_id)) == sorted(
        sent, key=lambda e: str(e.event_id)
    )
    for event, source in inbox.events:
        assert source.topic == Topics(broker_config.topic_prefix).for_event(event)
        assert source.key == event.key.encode()


async def test_malformed_records_go_to_the_dlq_and_the_consumer_keeps_going(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    good = every_event()
    task_posted, bid = good[0], good[4]
    bad_records = {
        b"{this is not json": "Invalid JSON",
        b'{"type": "Nonsense", "producer": "x"}': "unknown event type 'Nonsense'",
        encode(bid).replace(b'"plan_tokens":40', b'"plan_tokens":-40'): "plan_tokens",
        encode(bid): "BidSubmitted does not belong on the tasks stream",
    }
    inbox, dead = Inbox(), Inbox()
    bus = Bus(broker_config, producer="test")
    bus.subscribe(["tasks"], "tasks-reader", inbox)
    bus.subscribe(["dlq"], "dlq-reader", dead)
    async with bus:
        await publish_raw(broker_config.bootstrap, topics.tasks, b"task-x", *bad_records)
        await bus.publish(task_posted)  # a good one after the bad ones is still handled
        assert await inbox.wait_for(1) == [task_posted]
        letters = await dead.wait_for(len(bad_records))
    assert len(inbox.events) == 1
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    by_raw = {letter.raw_value: letter for letter in letters}
    assert set(by_raw) == set(bad_records)
    for raw, reason in bad_records.items():
        letter = by_raw[raw]
        assert reason in letter.error
        assert letter.source_topic == topics.tasks
        assert letter.consumer_group == broker_config.topic_prefix + "tasks-reader"
        assert letter.raw_key == b"task-x"


async def test_a_failing_handler_dead_letters_the_event_and_the_next_one_is_handled(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    first, second = every_event(task_id="a")[0], every_event(task_id="b")[0]
    handled, dead = Inbox(), Inbox()

    async def fussy(event: Event, source: Source) -> None:
        if event == first:
            raise RuntimeError("cannot handle this one")
        await handled(event, source)

    bus = Bus(broker_config.model_copy(update={"partitions": 1}), producer="test")
    bus.subscribe(["tasks"], "fussy", fussy)
    bus.subscribe(["dlq"], "dlq-reader", dead)
    async with bus:
        await bus.publish(first)
        await bus.publish(second)
        assert await handled.wait_for(1) == [second]
        [letter] = await dead.wait_for(1)
    assert "cannot handle this one" in letter.error
    assert decode(letter.raw_value) == first


async def test_a_restarted_consumer_resumes_after_its_last_commit(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    events = [every_event(task_id=f"r{i}")[0] for i in range(6)]
    first_run, second_run = Inbox(), Inbox()
    async with Bus(broker_config, producer="test") as bus:
        for event in events[:3]:
            await bus.publish(event)
    reader = Bus(broker_config, producer="reader")
    reader.subscribe(["tasks"], "resumer", first_run)
    async with reader:
        await first_run.wait_for(3)
    async with Bus(broker_config, producer="test") as bus:
        for event in events[3:]:
            await bus.publish(event)
    reader = Bus(broker_config, producer="reader")
    reader.subscribe(["tasks"], "resumer", second_run)
    async with reader:
        await second_run.wait_for(3)
        await asyncio.sleep(0.5)  # anything redelivered would arrive now
    assert {e.task_id for e in await first_run.wait_for(3)} == {"r0", "r1", "r2"}
    assert sorted(e.task_id for e in await second_run.wait_for(3)) == ["r3", "r4", "r5"]


async def test_a_subscription_commits_what_it_handled_before_its_partitions_move(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """A second member joining takes partitions from the first: what the first handled there is
    committed as they go (not on the committer's next round), so the second reads none of it."""
    early = [every_event(task_id=f"e{i}")[0] for i in range(12)]
    late = [every_event(task_id=f"l{i}")[0] for i in range(6)]
    first, second = Inbox(), Inbox()
    one = Bus(broker_config, producer="one")
    consumer = one.subscribe(["tasks"], "movers", first)
    consumer.committer.interval_s = 60.0  # after its first round, the committer waits a minute
    async with one, Bus(broker_config, producer="test") as bus:
        for event in early:
            await bus.publish(event)
        await first.wait_for(len(early))
        await asyncio.sleep(0.5)  # the first round of commits is done: now it waits
        for event in late:
            await bus.publish(event)
        await first.wait_for(len(early) + len(late))
        await asyncio.sleep(0.2)  # the last handler has returned
        two = Bus(broker_config, producer="two")
        two.subscribe(["tasks"], "movers", second)
        async with two:
            await two.joined()
            await asyncio.sleep(1.0)  # anything redelivered would arrive now
    assert second.events == []


# --- one record never stops a consumer (issue 13) ---------------------------------------------


async def read_until(consumer: PartitionedConsumer, event: Event) -> list[Delivery]:
    """Everything the consumer delivers up to `event`, as the auctioneer and recorder poll."""
    deliveries: list[Delivery] = []
    async with asyncio.timeout(30):
        while not any(d.event == event for d in deliveries):
            deliveries += [d async for d in consumer.poll(0.2)]
    return deliveries


async def test_records_of_a_megabyte_are_dead_lettered_as_excerpts_and_committed_past(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """The auctioneer and the recorder crash-looped on a 1 MB malformed record: its dead letter
    held the whole record base64-encoded, over the producer's request limit."""
    good = every_event(task_id="after")[0]
    oversize = encode(huge_task(12))  # valid field by field, over the 1 MB record cap
    await publish_raw(broker_config.bootstrap, topics.tasks, b"after", BIG_GARBAGE, oversize)
    async with Bus(broker_config, "client") as client:
        await client.publish(good)
    dead = Inbox()
    reader = Bus(broker_config, "reader")
    reader.subscribe(["dlq"], "dlq-reader", dead)
    bus = Bus(broker_config, "auctioneer")
    consumer = PartitionedConsumer(bus, ["tasks"], "bounded")
    async with bus, reader:
        await consumer.start()
        try:
            deliveries = await read_until(consumer, good)
            await consumer.commit(consumer.next_offsets)
        finally:
            await consumer.stop()
        letters = await dead.wait_for(2)
    assert [d.event for d in deliveries] == [None, None, good]
    tp = TopicPartition(topics.tasks, deliveries[-1].source.partition)
    committed = await committed_offsets(broker_config.bootstrap, consumer.group, [tp])
    assert committed == {tp: deliveries[-1].source.offset + 1}
    by_size = {letter.raw_size: letter for letter in letters}
    for raw, reason in [
        (BIG_GARBAGE, "Invalid JSON"),
        (oversize, f"(record): {len(oversize):,} bytes, over the record cap of 1,000,000 bytes"),
    ]:
        letter = by_size[len(raw)]
        assert reason in letter.error
        assert letter.raw_value == raw[:4096] and letter.raw_key == b"after"
        assert letter.raw_sha256 == hashlib.sha256(raw).hexdigest()
        assert letter.consumer_group == consumer.group


async def test_a_dead_letter_that_cannot_be_published_is_logged_and_committed_past(
    broker_config: BrokerConfig,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = every_event(task_id="after")[0]
    await publish_raw(broker_config.bootstrap, topics.tasks, b"after", b"{not json")
    async with Bus(broker_config, "client") as client:
        await client.publish(good)
    bus = Bus(broker_config, "auctioneer")
    consumer = PartitionedConsumer(bus, ["tasks"], "unlettered")

    async def broker_away(event: Event) -> None:
        raise KafkaTimeoutError("the dlq is unreachable")

    async with bus:
        monkeypatch.setattr(bus, "publish", broker_away)
        await consumer.start()
        try:
            with caplog.at_level(logging.ERROR, logger="marketplace.shared.bus"):
                deliveries = await read_until(consumer, good)
            await consumer.commit(consumer.next_offsets)
        finally:
            await consumer.stop()
    assert [d.event for d in deliveries] == [None, good]
    tp = TopicPartition(topics.tasks, deliveries[-1].source.partition)
    assert await committed_offsets(broker_config.bootstrap, consumer.group, [tp]) == {
        tp: deliveries[-1].source.offset + 1
    }
    [logged] = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name.startswith("marketplace.shared.bus")
    ]  # aiokafka's own, of a client another test left reconnecting to its broker, aside
    assert f"{topics.tasks}[{tp.partition}]@{deliveries[0].source.offset}" in logged
    assert "not published; skipped" in logged
