"""`sale loadtest --trace`: where an auction's time goes, hop by hop, from the records' stamps.

With `[broker] trace` on, every record carries (`marketplace.shared.bus.TRACE_HEADER`) when it
was sent and, if it answers another record, where that one was read and when its consumer was
free to read it, had it, folded it in, and how long its last commit took. Following an
`AuctionClosed` back along these causes to its `TaskPosted` gives the auction's critical path:
each hop from a record E to the record R it caused splits into

- busy: E waited while R's consumer handled other records (its commit excepted);
- commit: E waited while R's consumer committed offsets;
- fetch: produce, broker and fetch wait, until the consumer had E in hand;
- handle: decoding, checking and handling E up to R's send (the auctioneer: folding E in);
- act: the auctioneer only, from folding E in to sending its decision.

All stamps are `time.time()` of processes on one machine, so they compare directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from statistics import mean

from aiokafka import AIOKafkaConsumer

from marketplace.shared.bus import TRACE_HEADER, caught_up, from_start, reader
from marketplace.shared.config import BrokerConfig
from schemas.codec import EventDecodeError, decode
from schemas.events import AuctionClosed, Event
from schemas.topics import Topics

STREAMS = ("tasks", "bids", "reviews", "auctions")
STAGES = ("busy", "commit", "fetch", "handle", "act")


@dataclass(frozen=True)
class Traced:
    """One record as read back with its stamp."""

    event: Event
    stamp: dict


@dataclass(frozen=True)
class Hop:
    cause: Traced
    answer: Traced
    ms: dict[str, float]  # stage → milliseconds

    def __str__(self) -> str:
        name = f"{self.cause.event.type} → {self.answer.event.type} ({self.answer.stamp['by']})"
        stages = "  ".join(f"{stage} {self.ms[stage]:6.1f}" for stage in STAGES)
        return f"  {name:<48} {stages}   = {sum(self.ms.values()):6.1f} ms"


def hop(cause: Traced, answer: Traced) -> Hop:
    """Splits the time from `cause` sent to `answer` sent into the stages (module docstring)."""
    sent, stamp = cause.stamp["sent"], answer.stamp
    free, fetched = stamp["free"], stamp["fetched"]
    waited = max(0.0, free - sent)
    commit = max(0.0, min(stamp.get("commit", 0.0), waited))
    folded = stamp.get("folded", stamp["sent"])
    seconds = {
        "busy": waited - commit,
        "commit": commit,
        "fetch": fetched - max(free, sent),
        "handle": folded - fetched,
        "act": stamp["sent"] - folded,
    }
    return Hop(cause, answer, {stage: 1000 * s for stage, s in seconds.items()})


async def read_back(config: BrokerConfig) -> dict[tuple[str, int, int], Traced]:
    """Every stamped record of the auction streams, by where it was read."""
    topics = Topics(config.topic_prefix)
    consumer = await reader(config)
    try:
        parts = await from_start(consumer, [getattr(topics, s) for s in STREAMS])
        return await _read_all(consumer, parts)
    finally:
        await consumer.stop()


async def _read_all(consumer: AIOKafkaConsumer, parts: list) -> dict[tuple[str, int, int], Traced]:
    records: dict[tuple[str, int, int], Traced] = {}
    while True:
        batches = await consumer.getmany(timeout_ms=200)
        for tp, batch in batches.items():
            for record in batch:
                stamp = dict(record.headers).get(TRACE_HEADER)
                try:
                    event = decode(record.value or b"")
                except EventDecodeError:
                    continue
                if stamp is not None:
                    where = (tp.topic, tp.partition, record.offset)
                    records[where] = Traced(event, json.loads(stamp))
        if not batches and await caught_up(consumer, parts):
            return records


def critical_path(records: dict[tuple[str, int, int], Traced], task_id: str) -> list[Hop]:
    """The hops from the task's `TaskPosted` to its `AuctionClosed`, following the causes."""
    closed = next(
        (
            r
            for r in records.values()
            if isinstance(r.event, AuctionClosed) and r.event.task_id == task_id
        ),
        None,
    )
    if closed is None:
        return []
    path = [closed]
    while (cause := path[-1].stamp.get("cause")) is not None:
        earlier = records.get(tuple(cause))
        if earlier is None:
            break
        path.append(earlier)
    path.reverse()
    return [hop(cause, answer) for cause, answer in pairwise(path)]


def report(records: dict[tuple[str, int, int], Traced], task_ids: list[str], title: str) -> str:
    """One auction hop by hop (the median by total), then each stage's mean over all of them."""
    paths = [p for t in task_ids if (p := critical_path(records, t))]
    if not paths:
        return f"{title}: no traced auction found"
    paths.sort(key=lambda p: sum(sum(h.ms.values()) for h in p))
    middle = paths[len(paths) // 2]
    lines = [title, f"  the median auction of {len(paths)}, hop by hop (ms):"]
    lines += [str(h) for h in middle]
    totals = {stage: mean(sum(h.ms[stage] for h in p) for p in paths) for stage in STAGES}
    whole = sum(totals.values())
    shares = "  ".join(
        f"{stage} {ms:6.1f} ({100 * ms / whole:4.1f}%)" for stage, ms in totals.items()
    )
    lines.append(f"  mean over {len(paths)} auctions, {len(middle)} hops: {shares}")
    lines.append(f"  = {whole:.1f} ms from TaskPosted sent to AuctionClosed sent")
    return "\n".join(lines)
