"""Records as a hostile or careless producer writes them: past the Bus, its encoding, its
signature and its cap."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from marketplace.shared.bus import new_consumer
from marketplace.shared.offsets import highwater_marks


async def publish_raw(bootstrap: str, topic: str, key: bytes, *values: bytes) -> None:
    """Publishes `values` in order, each acknowledged, with a request limit large enough for any
    of them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 2**20)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Captured:
    """A record as it was published, headers (its signature) and all."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


async def capture(bootstrap: str, topics: list[str], key: bytes) -> list[Captured]:
    """Every record under `key` on `topics`, read from the start to the end, as published."""
    ends = await highwater_marks(bootstrap, topics)
    consumer = new_consumer(bootstrap, fetch_max_wait_ms=10)
    await consumer.start()
    try:
        parts = [tp for tp, end in ends.items() if end > 0]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, 0)
        found, left = [], set(parts)
        while left:
            for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                found += [
                    Captured(r.topic, r.key, r.value, tuple(r.headers))
                    for r in records
                    if r.key == key and r.offset < ends[tp]
                ]
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


async def send_again(bootstrap: str, records: list[Captured]) -> None:
    """Publishes `records` again, each as it was (key, value and headers), acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 2**20)
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(r.topic, r.value, key=r.key, headers=list(r.headers))
    finally:
        await producer.stop()
