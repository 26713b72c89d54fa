"""The operator's dashboard: a plain page (static/dashboard.html, no build step, nothing from
outside) that polls the JSON endpoints here, all read from the Postgres log.

    GET /dashboard                  the page
    GET /api/overview               auctions waiting, open and closed (by reason), outcomes
                                    (verified: passed or failed; answered: nothing to check),
                                    spend, dead letters (count and the latest few)
    GET /api/auctions?limit=N       the latest auctions with status, winner, bids, cost, verdict
    GET /api/auctions/{task_id}     one auction's story (`sale audit`'s text) and its events
    GET /api/agents                 per agent: bids, wins, pass rate of its wins, spend, last beat
    GET /api/series?limit=N         cost and verdict of the latest closed auctions, in order

Every number is a query over the recorder's projections (`marketplace.log.projections`) or the
event log itself, so the page says what the audit trail says, however many doors are open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse

from marketplace.log.audit import render
from marketplace.log.lines import gist, labels_of
from marketplace.log.store import load_events
from marketplace.services.front_door.openai import OpenAIError
from marketplace.services.front_door.reader import LogReader, LogUnreadable

STATIC = Path(__file__).parent / "static"
HEARTBEATS_READ = 2000  # the latest heartbeats tell who is up; older ones only cost a scan
AWARDED = ("awarded", "refined")

_COUNTS = """
SELECT count(*) FILTER (WHERE opened_at IS NULL AND closed_at IS NULL) AS waiting,
       count(*) FILTER (WHERE opened_at IS NOT NULL AND closed_at IS NULL) AS open,
       count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed,
       (SELECT count(passed) FROM outcomes) AS verified,
       (SELECT count(*) FROM outcomes WHERE passed) AS passed,
       (SELECT count(*) FROM outcomes WHERE passed IS NULL) AS answered,
       (SELECT coalesce(sum(cost), 0) FROM spend) AS spend,
       (SELECT count(*) FROM events WHERE type = 'DeadLetter') AS dead_letters
FROM auctions
"""
_REASONS = """
SELECT reason, count(*) AS n FROM auctions WHERE closed_at IS NOT NULL GROUP BY reason
ORDER BY reason
"""
_DEAD_LETTERS = """
SELECT occurred_at, payload->>'source_topic' AS topic, payload->>'consumer_group' AS consumer,
       payload->>'error' AS error
FROM events WHERE type = 'DeadLetter' ORDER BY id DESC LIMIT 5
"""
_AUCTIONS = """
SELECT a.task_id, a.kind, a.tenant, left(a.prompt, 160) AS prompt, a.posted_at, a.opened_at,
       a.closed_at, a.reason, a.winner_agent_id, o.passed, o.task_id IS NOT NULL AS judged,
       (SELECT coalesce(sum(s.cost), 0) FROM spend s WHERE s.task_id = a.task_id) AS cost,
       (SELECT count(*) FROM bids b WHERE b.task_id = a.task_id) AS bids,
       EXISTS (SELECT 1 FROM results r WHERE r.task_id = a.task_id) AS delivered,
       (SELECT e.payload->>'mechanism' FROM events e
        WHERE e.task_id = a.task_id AND e.type IN ('AuctionOpened', 'AuctionClosed')
        ORDER BY e.id LIMIT 1) AS mechanism
FROM auctions a LEFT JOIN outcomes o ON o.task_id = a.task_id
ORDER BY coalesce(a.posted_at, a.opened_at, a.closed_at) DESC NULLS LAST, a.task_id
LIMIT $1
"""
_ONE_AUCTION = _AUCTIONS.replace(
    "FROM auctions a LEFT JOIN outcomes o ON o.task_id = a.task_id",
    "FROM auctions a LEFT JOIN outcomes o ON o.task_id = a.task_id WHERE a.task_id = $2",
)
_AGENTS = f"""
WITH bid AS (SELECT agent_id, count(*) AS bids FROM bids GROUP BY agent_id),
     won AS (SELECT a.winner_agent_id AS agent_id, count(*) AS wins,
                    count(o.passed) AS verified, count(*) FILTER (WHERE o.passed) AS passed
             FROM auctions a LEFT JOIN outcomes o ON o.task_id = a.task_id
             WHERE a.winner_agent_id IS NOT NULL GROUP BY a.winner_agent_id),
     spent AS (SELECT agent_id, sum(cost) AS cost,
                      sum(prompt_tokens + completion_tokens)::bigint AS tokens
               FROM spend GROUP BY agent_id),
     beat AS (SELECT DISTINCT ON (agent_id) agent_id, payload->>'model' AS model,
                     payload->>'status' AS status, occurred_at AS seen
              FROM (SELECT id, agent_id, payload, occurred_at FROM events
                    WHERE type = 'AgentHeartbeat' ORDER BY id DESC
                    LIMIT {HEARTBEATS_READ}) latest
              ORDER BY agent_id, id DESC),
     ids AS (SELECT agent_id FROM bid UNION SELECT agent_id FROM won
             UNION SELECT agent_id FROM spent UNION SELECT agent_id FROM beat)
SELECT ids.agent_id, beat.model, beat.status, beat.seen,
       coalesce(bid.bids, 0) AS bids, coalesce(won.wins, 0) AS wins,
       coalesce(won.verified, 0) AS verified, coalesce(won.passed, 0) AS passed,
       coalesce(spent.cost, 0) AS cost, coalesce(spent.tokens, 0) AS tokens
FROM ids LEFT JOIN bid USING (agent_id) LEFT JOIN won USING (agent_id)
     LEFT JOIN spent USING (agent_id) LEFT JOIN beat USING (agent_id)
WHERE ids.agent_id IS NOT NULL
ORDER BY ids.agent_id
"""
_SERIES = """
SELECT a.task_id, a.closed_at AS at, a.reason, o.passed,
       (SELECT coalesce(sum(s.cost), 0) FROM spend s WHERE s.task_id = a.task_id) AS cost
FROM auctions a LEFT JOIN outcomes o ON o.task_id = a.task_id
WHERE a.closed_at IS NOT NULL
ORDER BY a.closed_at DESC, a.task_id
LIMIT $1
"""


def status(row: asyncpg.Record) -> str:
    """Where the task stands, in one word the page colours."""
    if row["closed_at"] is None:
        return "bidding" if row["opened_at"] is not None else "waiting"
    if row["reason"] not in AWARDED:
        return row["reason"]
    if row["judged"]:  # a general task's answer has nothing to check: passed is NULL
        return {True: "passed", False: "failed", None: "answered"}[row["passed"]]
    return "delivered" if row["delivered"] else "executing"


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _auction(row: asyncpg.Record) -> dict[str, Any]:
    fields = {key: _json(value) for key, value in row.items() if key not in ("delivered", "judged")}
    return {**fields, "status": status(row)}


def router(log: LogReader) -> APIRouter:
    routes = APIRouter()

    @routes.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @routes.get("/dashboard", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "dashboard.html", media_type="text/html")

    @routes.get("/api/overview")
    async def overview() -> dict[str, Any]:
        async with _readable():
            counts = await log.fetchrow(_COUNTS)
            reasons = await log.fetch(_REASONS)
            letters = await log.fetch(_DEAD_LETTERS)
        return {
            **{k: _json(v) for k, v in counts.items() if k != "dead_letters"},
            "closed_by_reason": {r["reason"]: r["n"] for r in reasons},
            "dead_letters": {
                "count": counts["dead_letters"],
                "latest": [{k: _json(v) for k, v in r.items()} for r in letters],
            },
        }

    @routes.get("/api/auctions")
    async def auctions(limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        async with _readable():
            rows = await log.fetch(_AUCTIONS, limit)
        return {"auctions": [_auction(r) for r in rows]}

    @routes.get("/api/auctions/{task_id}")
    async def auction(task_id: str) -> dict[str, Any]:
        async with _readable():
            async with log.connection() as conn:
                stored = await load_events(conn, task_id)
            row = await log.fetchrow(_ONE_AUCTION, 1, task_id)
        if not stored:
            raise OpenAIError(404, f"no events recorded for task {task_id!r}", code="not_found")
        labels = labels_of(s.event for s in stored)
        events = [
            {"at": _json(s.event.occurred_at), "type": s.type, "gist": gist(s.event, labels)}
            for s in stored
        ]
        summary = _auction(row) if row is not None else {"task_id": task_id}
        return {**summary, "story": render(stored), "events": events}

    @routes.get("/api/agents")
    async def agents() -> dict[str, Any]:
        async with _readable():
            rows = await log.fetch(_AGENTS)
        return {"agents": [_agent(r) for r in rows]}

    @routes.get("/api/series")
    async def series(limit: int = Query(200, ge=1, le=5000)) -> dict[str, Any]:
        async with _readable():
            rows = await log.fetch(_SERIES, limit)
        return {"points": [{k: _json(v) for k, v in r.items()} for r in reversed(rows)]}

    return routes


def _agent(row: asyncpg.Record) -> dict[str, Any]:
    fields = {key: _json(value) for key, value in row.items()}
    verified = row["verified"]
    return {**fields, "pass_rate": row["passed"] / verified if verified else None}


@asynccontextmanager
async def _readable() -> AsyncIterator[None]:
    """Turns an unreadable log into a 503 the page shows as it is."""
    try:
        yield
    except LogUnreadable as exc:
        raise OpenAIError(503, str(exc), "server_error", "log_unavailable") from None
