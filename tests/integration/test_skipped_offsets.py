"""A fetch that skips an offset (Tansu, under concurrent appends to one partition) costs a read
again, never a record: the one group consumer goes back for it, polled by a service or run with
a handler by `Bus.subscribe`.

The skip itself comes when it will (now and then, under concurrent appends), so the first two tests
make one happen on purpose: the consumer is moved past a record it has not read, as such a fetch
moves it, or a fetch answers without it. The third appends concurrently and checks that every
record arrives, in order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from marketplace.shared.bus import Bus, PartitionedConsumer, Source
from marketplace.shared.config import BrokerConfig
from schemas.events import Event
from schemas.topics import Topics
from tests.samples import every_event


def tasks(count: int) -> list[Event]:
    """TaskPosted events of one task id: one key, so one partition, in this order."""
    task_id = f"skip-{uuid.uuid4().hex[:6]}"
    first = every_event(task_id=task_id)[0]
    return [first.model_copy(update={"event_id": uuid.uuid4()}) for _ in range(count)]


async def test_the_services_consumer_reads_a_skipped_offset_again_in_order(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    sent = tasks(6)
    async with Bus(broker_config, producer="test") as bus:
        for event in sent:
            await bus.publish(event)
        consumer = PartitionedConsumer(bus, ["tasks"], "skipped")
        await consumer.start()
        offsets: list[int] = []
        try:
            async with asyncio.timeout(30):
                while len(offsets) < len(sent):
                    async for delivery in consumer.poll(0.2, max_records=1):
                        offsets.append(delivery.source.offset)
                    if len(offsets) == 2 and len(consumer.rereads._at) == 0:
                        [tp] = [tp for tp in consumer.assignment() if tp in consumer.next_offsets]
                        consumer._consumer.seek(tp, 4)  # as a fetch answering with offset 4 does
        finally:
            await consumer.stop()
    assert offsets == [0, 1, 2, 3, 4, 5]
    assert len(consumer.rereads._at) == 1  # the skip was seen, and read again


async def test_a_subscription_reads_a_skipped_offset_again_in_order(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """`Bus.subscribe` runs the same consumer: its first fetch of offset 2 leaves 2 out, as
    Tansu's can, and the handler still sees every record once, in order."""
    sent = tasks(6)
    async with Bus(broker_config, producer="test") as bus:
        for event in sent:
            await bus.publish(event)
    offsets: list[int] = []
    done = asyncio.Event()
    reader = Bus(broker_config, producer="reader")

    async def handler(event: Event, source: Source) -> None:
        offsets.append(source.offset)
        if len(offsets) == len(sent):
            done.set()

    consumer = reader.subscribe(["tasks"], "skipped", handler)
    async with reader:
        skipping = _skipping_offset_2(consumer._consumer.getmany)
        consumer._consumer.getmany = skipping  # type: ignore[method-assign]
        await asyncio.wait_for(done.wait(), 30)
        await asyncio.sleep(0.3)  # anything handled twice would be by now
    assert offsets == [0, 1, 2, 3, 4, 5]
    assert skipping.skipped == 1 and len(consumer.rereads._at) == 1


def _skipping_offset_2(getmany: Callable[..., Awaitable[dict]]) -> Any:
    """`getmany`, except that the first fetch holding offset 2 answers without it."""

    async def fetch(*args: Any, **kwargs: Any) -> dict:
        batches = await getmany(*args, **kwargs)
        if fetch.skipped:
            return batches
        for tp, records in batches.items():
            if any(r.offset == 2 for r in records):
                fetch.skipped += 1
                batches[tp] = [r for r in records if r.offset != 2]
        return batches

    fetch.skipped = 0
    return fetch


async def test_concurrent_appends_to_one_partition_all_arrive_in_order(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    """Eight producers append to one partition at once, each waiting for every acknowledgement
    (as the services do); a subscription must see every record once, in offset order."""
    producers, each = 8, 250
    sent = tasks(producers * each)
    received: list[int] = []
    done = asyncio.Event()
    reader = Bus(broker_config, producer="reader")

    async def handler(event: Event, source: Source) -> None:
        received.append(source.offset)
        if len(received) == len(sent):
            done.set()

    reader.subscribe(["tasks"], "concurrent", handler)
    buses = [Bus(broker_config, producer="test") for _ in range(producers)]
    async with reader:
        await reader.joined()
        for bus in buses:
            await bus.start()
        try:
            await asyncio.gather(
                *(
                    _publish_each(bus, sent[i * each : (i + 1) * each])
                    for i, bus in enumerate(buses)
                )
            )
        finally:
            for bus in buses:
                await bus.stop()
        await asyncio.wait_for(done.wait(), 60)
    assert received == list(range(len(sent)))


async def _publish_each(bus: Bus, events: list[Event]) -> None:
    for event in events:
        await bus.publish(event)
