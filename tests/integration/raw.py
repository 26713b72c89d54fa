"""Records as a hostile or careless producer writes them: past the Bus, its encoding, its
signature and its cap."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer


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
