"""Reading again what a fetch skipped: Tansu can answer a fetch with records beyond one not yet
visible; the consumer goes back for it rather than lose it."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

REREAD_TRIES = 5  # fetches that may skip the same offset before it is taken as a gap


class Rereads:
    """Sends a consumer back to an offset a fetch skipped.

    Tansu (memory storage) can answer a fetch with records beyond one not yet visible when
    producers append to one partition concurrently: every append is acknowledged, and the same
    fetch made again a moment later returns the missing record (seen with aiokafka alone, several
    producers appending with `send_and_wait`; tests/integration/test_skipped_offsets.py makes
    the consumer meet a skip). Our topics are neither compacted nor transactional, so a record
    in between exists; a consumer that took the later one would never see it (an auction would
    wait out its window for a bid). After `REREAD_TRIES` fetches skipping the same offset it is
    taken as a real gap, with a warning."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._at: dict[TopicPartition, tuple[int, int]] = {}  # → (offset, tries)

    def skipped(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, expected: int, record: Any
    ) -> bool:
        """Whether `record` comes after `expected` on its partition, and the consumer was sent
        back to read from `expected` (the caller drops the record: it comes again, in order)."""
        if record.offset <= expected:
            return False
        at, tries = self._at.get(tp, (expected, 0))
        tries = tries + 1 if at == expected else 1
        self._at[tp] = (expected, tries)
        log.warning(
            "%s: %s[%d] skipped offsets %d to %d (%s)",
            self.group,
            tp.topic,
            tp.partition,
            expected,
            record.offset - 1,
            "reading them again" if tries <= REREAD_TRIES else "taken as a gap",
        )
        if tries > REREAD_TRIES:
            return False
        consumer.seek(tp, expected)
        return True
