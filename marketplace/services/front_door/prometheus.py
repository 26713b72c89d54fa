"""Prometheus `/metrics`: the marketplace's counters, read from the Postgres log at each scrape,
and the consumer lag, read from the broker.

Why from the log rather than by following the topics: the log is the audit trail every other
figure (`sale report`, the dashboard) comes from, so the counters agree with them; it is
append-only, so a count of its rows only grows, which is what a Prometheus counter promises,
across restarts of the door too (a door that counted the events it had followed would start
again at zero, and would need a consumer group of its own per replica); and any number of
doors report the same values. The price is a few aggregate queries per scrape over indexed
projections, cheap at a scrape every 15 s, read in one snapshot (a repeatable-read
transaction), so the figures of a scrape agree with each other as the log stood at one moment.
Consumer lag is the one figure the log cannot hold: it is the broker's (committed offsets
against high-water marks, `sale topics`), probed at most every `LAG_EVERY_S` because each probe
opens a consumer per group.

    sale_auctions_opened_total               auctions opened
    sale_auctions_closed_total{reason}       auctions opened and closed, by reason (awarded,
                                             no_bids, ...): opened = closed + open, always
    sale_auctions_open / _waiting            open now / posted and not yet opened
    sale_tasks_refused_total{reason}         tasks refused before an auction opened
                                             (over_budget): closed, never opened, so not in
                                             the auctions' counts
    sale_award_latency_seconds               AuctionOpened → AuctionClosed of awarded auctions
                                             (both stamped by the auctioneer: one clock)
    sale_bids_total{agent}                   bids (every round) by agent
    sale_wins_total{agent}                   auctions won by agent
    sale_spend_total{agent,part}             cost as the agents priced it: bids, refinement,
                                             jury, execution
    sale_tokens_total{agent,direction}       prompt and completion tokens
    sale_outcomes_total{verdict}             judged results: passed, failed, answered (a general
                                             task: nothing to check)
    sale_dead_letters_total                  records a consumer could not use
    sale_consumer_lag{group,topic}           records not yet committed by the group (never
                                             negative: `shared.offsets.topic_status`)
    sale_log_up, sale_broker_up              1 when the last read of each worked
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from marketplace.services.front_door.reader import LogReader, LogUnreadable
from marketplace.shared.config import BrokerConfig
from marketplace.shared.offsets import TopicStatus, topic_status

log = logging.getLogger("front_door.prometheus")
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LAG_EVERY_S = 15.0
LAG_TIMEOUT_S = 10.0

_AUCTIONS = """
SELECT count(opened_at) AS opened,
       count(*) FILTER (WHERE opened_at IS NOT NULL AND closed_at IS NULL) AS open,
       count(*) FILTER (WHERE opened_at IS NULL AND closed_at IS NULL) AS waiting
FROM auctions
"""
# A refused task (over its budget) is closed without ever opening: counted apart, or the
# auctions closed would outnumber those opened.
_CLOSED = """
SELECT opened_at IS NOT NULL AS opened, reason, count(*) AS n FROM auctions
WHERE closed_at IS NOT NULL GROUP BY 1, 2
"""
_LATENCY = f"""
SELECT count(*) AS n, coalesce(sum(s), 0) AS total,
       {", ".join(f"count(*) FILTER (WHERE s <= {b}) AS le{i}" for i, b in enumerate(BUCKETS))}
FROM (SELECT extract(epoch FROM closed_at - opened_at)::float8 AS s FROM auctions
      WHERE reason IN ('awarded', 'refined') AND opened_at IS NOT NULL) awarded
"""
_BIDS = "SELECT agent_id, count(*) AS n FROM bids GROUP BY agent_id"
_WINS = """
SELECT winner_agent_id AS agent_id, count(*) AS n FROM auctions
WHERE winner_agent_id IS NOT NULL GROUP BY winner_agent_id
"""
_SPEND = """
SELECT agent_id, part, sum(cost) AS cost, sum(prompt_tokens)::bigint AS prompt,
       sum(completion_tokens)::bigint AS completion
FROM spend GROUP BY agent_id, part
"""
_OUTCOMES = "SELECT passed, count(*) AS n FROM outcomes GROUP BY passed"
_DEAD_LETTERS = "SELECT count(*) FROM events WHERE type = 'DeadLetter'"


async def from_log(reader: LogReader) -> list[Metric]:
    """The log's counters (see the module's docstring); `sale_log_up` 0 and nothing else when
    the log cannot be read."""
    up = GaugeMetricFamily("sale_log_up", "1 when the Postgres log was read for this scrape")
    try:
        async with (
            reader.connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            auctions = await conn.fetchrow(_AUCTIONS)
            closed = await conn.fetch(_CLOSED)
            latency = await conn.fetchrow(_LATENCY)
            bids, wins = await conn.fetch(_BIDS), await conn.fetch(_WINS)
            spend = await conn.fetch(_SPEND)
            outcomes = await conn.fetch(_OUTCOMES)
            dead = await conn.fetchval(_DEAD_LETTERS)
    except LogUnreadable as exc:
        log.warning("metrics: %s", exc)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    opened = CounterMetricFamily(
        "sale_auctions_opened", "auctions opened", value=auctions["opened"]
    )
    open_now = GaugeMetricFamily("sale_auctions_open", "auctions open now", value=auctions["open"])
    waiting = GaugeMetricFamily(
        "sale_auctions_waiting", "tasks posted, auction not yet opened", value=auctions["waiting"]
    )
    by_reason = CounterMetricFamily(
        "sale_auctions_closed", "auctions opened and closed, by reason", labels=["reason"]
    )
    refused = CounterMetricFamily(
        "sale_tasks_refused", "tasks refused before an auction opened, by reason", labels=["reason"]
    )
    for row in closed:
        (by_reason if row["opened"] else refused).add_metric([row["reason"] or "unknown"], row["n"])
    dead_letters = CounterMetricFamily(
        "sale_dead_letters", "records a consumer could not use", value=dead
    )
    return [
        up,
        opened,
        by_reason,
        refused,
        open_now,
        waiting,
        _latency(latency),
        _per_agent("sale_bids", "bids (every round), by agent", bids),
        _per_agent("sale_wins", "auctions won, by agent", wins),
        *_spend(spend),
        _outcomes(outcomes),
        dead_letters,
    ]


def _latency(row: object) -> HistogramMetricFamily:
    cumulative = [(f"{b:g}", row[f"le{i}"]) for i, b in enumerate(BUCKETS)]
    return HistogramMetricFamily(
        "sale_award_latency_seconds",
        "from AuctionOpened to AuctionClosed of awarded auctions",
        buckets=[*cumulative, ("+Inf", row["n"])],
        sum_value=row["total"],
    )


def _per_agent(name: str, doc: str, rows: Iterable) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["agent"])
    for row in rows:
        family.add_metric([row["agent_id"]], row["n"])
    return family


def _spend(rows: Iterable) -> list[CounterMetricFamily]:
    cost = CounterMetricFamily(
        "sale_spend", "cost as the agents priced it, by agent and part", labels=["agent", "part"]
    )
    tokens = CounterMetricFamily(
        "sale_tokens", "tokens, by agent and direction", labels=["agent", "direction"]
    )
    for row in rows:
        cost.add_metric([row["agent_id"], row["part"]], row["cost"])
    totals: dict[tuple[str, str], int] = {}
    for row in rows:
        for direction in ("prompt", "completion"):
            key = (row["agent_id"], direction)
            totals[key] = totals.get(key, 0) + row[direction]
    for labels, value in sorted(totals.items()):
        tokens.add_metric(list(labels), value)
    return [cost, tokens]


def _outcomes(rows: Iterable) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "sale_outcomes",
        "judged results: passed, failed, or answered (nothing to check)",
        labels=["verdict"],
    )
    for row in rows:
        verdict = {True: "passed", False: "failed", None: "answered"}[row["passed"]]
        family.add_metric([verdict], row["n"])
    return family


class LagProbe:
    """The consumer lag of every group under the topic prefix, probed at most every
    `every_s` (a probe opens a consumer per group); the last probe's answer in between."""

    def __init__(self, broker: BrokerConfig | None, every_s: float = LAG_EVERY_S) -> None:
        self.broker = broker
        self.every_s = every_s
        self._last: tuple[float, list[TopicStatus] | None] | None = None
        self._probing = asyncio.Lock()

    async def read(self) -> list[TopicStatus] | None:
        """The topics' status, None when the broker did not answer (or none is configured)."""
        if self.broker is None or not self.broker.bootstrap:
            return None
        async with self._probing:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= self.every_s:
                self._last = (now, await self._probe())
            return self._last[1]

    async def _probe(self) -> list[TopicStatus] | None:
        try:
            return await asyncio.wait_for(topic_status(self.broker), LAG_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("metrics: the broker at %s does not answer: %r", self.broker.bootstrap, exc)
            return None

    async def metrics(self) -> list[Metric]:
        if self.broker is None or not self.broker.bootstrap:
            return []
        status = await self.read()
        up = GaugeMetricFamily("sale_broker_up", "1 when the broker answered the last lag probe")
        up.add_metric([], 0 if status is None else 1)
        lag = GaugeMetricFamily(
            "sale_consumer_lag", "records not yet committed, by group", labels=["group", "topic"]
        )
        for topic in status or []:
            for group, behind in sorted(topic.lag.items()):
                lag.add_metric([group, topic.topic], behind)
        return [up, lag]


class _Snapshot:
    """A collector that hands prometheus_client metric families read beforehand (the reads
    are asynchronous; a collector's `collect` is not)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(families: list[Metric]) -> bytes:
    """The families in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
