"""A record the client believes: the one check every record it reads passes, whether it watches
the answer streams (`waiting`) or reads a task's history (`lookup`)."""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord

from marketplace.shared import signing
from schemas.codec import EventDecodeError, decode
from schemas.events import Event

log = logging.getLogger("client")


def trusted(trust: signing.Trust, max_bytes: int, record: ConsumerRecord) -> Event | None:
    """The event in a record if it holds a valid one its signature vouches for; else None
    (the services that consume the record dead-letter it: a client only skips it)."""
    try:
        event = decode(record.value or b"", max_bytes)
    except EventDecodeError as exc:
        log.warning(
            "client: skipped %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
        )
        return None
    refused = trust.check(event, signing.header_map(record.headers))
    if refused:
        log.warning(
            "client: skipped %s[%d]@%d: %s", record.topic, record.partition, record.offset, refused
        )
        return None
    return event
