"""Topic administration: create the marketplace's topics (their size and lag: `offsets`).

Topics are created explicitly, all with the same partition count, because every task-scoped
stream is keyed by task id and one auctioneer must own all of a task's partitions
(co-partitioning). Auto-created topics would get the broker's default count instead.
"""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from marketplace.shared.config import BrokerConfig
from marketplace.shared.kafka_auth import client_options
from schemas.topics import Topics


async def ensure_topics(config: BrokerConfig) -> list[str]:
    """Creates whichever of the marketplace's topics are missing; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap, **client_options(config))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in Topics(config.topic_prefix).all() if t not in existing]
        if missing:
            # another process may create them between our list and our create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, config.partitions, config.replication_factor) for t in missing]
                )
        return missing
    finally:
        await admin.close()
