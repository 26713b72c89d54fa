"""The projections: the tables that memory retrieval and `sale report` read, kept from the log.

`writes` says, purely, what one event changes (a statement and its arguments); `project` runs
the writes of a batch. Each rule is idempotent or "first one wins", so projecting an event
twice, or a batch again after a crash, changes nothing.

Only a task's awarded result (`marketplace.core.award`: the winner's first result for the
winning bid) reaches `results` and `spend`: another agent's result, or a second delivery, is in
the log and nowhere else. The award and the result travel on different topics and may be
stored in either order, so both the `TaskResult` and the `AuctionClosed` run the same
statement (`_AWARDED_RESULT`): it books the task's awarded result from the log once both are
in, and does nothing before, or again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from marketplace.core import spend
from marketplace.core.clock import aware
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidSubmitted,
    Event,
    RefinementCalled,
    ReviewSubmitted,
    SubmissionRejected,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
)

_TASK_POSTED = """
INSERT INTO auctions (task_id, kind, tenant, prompt, budget, posted_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (task_id) DO UPDATE SET kind = EXCLUDED.kind, tenant = EXCLUDED.tenant,
    prompt = EXCLUDED.prompt, budget = EXCLUDED.budget, posted_at = EXCLUDED.posted_at
WHERE auctions.posted_at IS NULL
"""
_AUCTION_OPENED = """
INSERT INTO auctions (task_id, opened_at, agents) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (task_id) DO UPDATE SET opened_at = EXCLUDED.opened_at, agents = EXCLUDED.agents
WHERE auctions.opened_at IS NULL
"""
_REFINEMENT_CALLED = """
INSERT INTO auctions (task_id, refinement_at, provisional_bid_id, provisional_agent_id,
                      provisional_score)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (task_id) DO UPDATE SET refinement_at = EXCLUDED.refinement_at,
    provisional_bid_id = EXCLUDED.provisional_bid_id,
    provisional_agent_id = EXCLUDED.provisional_agent_id,
    provisional_score = EXCLUDED.provisional_score
WHERE auctions.refinement_at IS NULL
"""
_AUCTION_CLOSED = """
INSERT INTO auctions (task_id, closed_at, reason, winner_agent_id, winner_bid_id, winning_plan,
                      weights)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
ON CONFLICT (task_id) DO UPDATE SET closed_at = EXCLUDED.closed_at, reason = EXCLUDED.reason,
    winner_agent_id = EXCLUDED.winner_agent_id, winner_bid_id = EXCLUDED.winner_bid_id,
    winning_plan = EXCLUDED.winning_plan, weights = EXCLUDED.weights
WHERE auctions.closed_at IS NULL
"""
_BID_SCORED = """
INSERT INTO bids (bid_id, task_id, agent_id, round, price, plan_tokens, entropy,
                  jury, cost, value, score, eligible, ineligible_reason, won)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, $14)
ON CONFLICT (bid_id) DO UPDATE SET jury = EXCLUDED.jury, cost = EXCLUDED.cost,
    value = EXCLUDED.value, score = EXCLUDED.score, eligible = EXCLUDED.eligible,
    ineligible_reason = EXCLUDED.ineligible_reason, won = EXCLUDED.won
WHERE bids.score IS NULL
"""
_BID_SUBMITTED = """
INSERT INTO bids (bid_id, task_id, agent_id, round, price, plan_tokens, entropy, event_id,
                  model, plan, memory_refs, requests, prompt_tokens, completion_tokens,
                  usage_cost, submitted_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16)
ON CONFLICT (bid_id) DO UPDATE SET event_id = EXCLUDED.event_id, model = EXCLUDED.model,
    plan = EXCLUDED.plan, memory_refs = EXCLUDED.memory_refs, requests = EXCLUDED.requests,
    prompt_tokens = EXCLUDED.prompt_tokens, completion_tokens = EXCLUDED.completion_tokens,
    usage_cost = EXCLUDED.usage_cost, submitted_at = EXCLUDED.submitted_at
WHERE bids.submitted_at IS NULL
"""
_REVIEW = """
INSERT INTO reviews (task_id, juror, round, event_id, scores, requests, prompt_tokens,
                     completion_tokens, usage_cost, submitted_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING
"""
_REJECTION = """
INSERT INTO rejections (rejected_event_id, task_id, agent_id, submission, bid_id, reason, detail,
                        rejected_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
"""
# The task's awarded results, read from the log: for each close of the task that names a
# winner, the winner's first TaskResult for the winning bid (in the order the log holds them,
# which is the results stream's). $1: the task, $2: the part they are booked under
# (`spend.part`). `kept` is empty when no award and its result are both in yet, or the result
# was booked already (`results` is unique by task and bid): the spend row follows the results
# row, so nothing is booked twice.
_AWARDED_RESULT = """
WITH awarded AS (
    SELECT DISTINCT ON (e.payload->>'bid_id') e.event_id, e.occurred_at, e.payload AS p
    FROM events e
    WHERE e.task_id = $1 AND e.type = 'TaskResult' AND EXISTS (
        SELECT 1 FROM events c
        WHERE c.task_id = $1 AND c.type = 'AuctionClosed'
          AND c.payload->>'winner_agent_id' = e.agent_id
          AND c.payload->>'winner_bid_id' = e.payload->>'bid_id'
    )
    ORDER BY e.payload->>'bid_id', e.id
), kept AS (
    INSERT INTO results (task_id, bid_id, agent_id, event_id, output, error, duration_s, cost,
                         requests, prompt_tokens, completion_tokens, usage_cost, finished_at)
    SELECT $1, (p->>'bid_id')::uuid, p->>'agent_id', event_id, p->>'output', p->>'error',
           (p->>'duration_s')::float8, (p->>'cost')::float8,
           (p->'usage'->>'requests')::bigint, (p->'usage'->>'prompt_tokens')::bigint,
           (p->'usage'->>'completion_tokens')::bigint, (p->'usage'->>'cost')::float8,
           occurred_at
    FROM awarded
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
INSERT INTO spend (event_id, task_id, agent_id, part, requests, prompt_tokens, completion_tokens,
                   cost, seconds, cached_tokens)
SELECT k.event_id, $1, p->>'agent_id', $2, (p->'usage'->>'requests')::bigint,
       (p->'usage'->>'prompt_tokens')::bigint, (p->'usage'->>'completion_tokens')::bigint,
       (p->'usage'->>'cost')::float8, coalesce((p->'usage'->>'seconds')::float8, 0),
       coalesce((p->'usage'->>'cached_tokens')::bigint, 0)
FROM kept k JOIN awarded USING (event_id)
ON CONFLICT DO NOTHING
"""
_OUTCOME = """
INSERT INTO outcomes (task_id, event_id, passed, score, details, decided_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING
"""
_SPEND = """
INSERT INTO spend (event_id, task_id, agent_id, part, requests, prompt_tokens, completion_tokens,
                   cost, seconds, cached_tokens)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING
"""

# A lean draft's part depends on whether it won (`spend.draft_part`), which the draft alone
# does not tell: the statements ask the `auctions` table and pass both of the rule's answers.
# Whichever of the draft and the close is projected second settles the part, so the order in
# which the two topics are read does not matter.
_DRAFT_SPEND = """
INSERT INTO spend (event_id, task_id, agent_id, part, requests, prompt_tokens, completion_tokens,
                   cost, seconds, cached_tokens)
VALUES ($1, $2, $3,
        CASE WHEN EXISTS (SELECT 1 FROM auctions WHERE winner_bid_id = $11) THEN $12 ELSE $4 END,
        $5, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING
"""
_DRAFT_WON = """
UPDATE spend SET part = $2
WHERE event_id = (SELECT event_id FROM bids WHERE bid_id = $1)
"""

# Run after every other write of a batch, so that it runs after the batch is appended whatever
# the order of kinds in it: a result and its award in one batch, in either order, book it.
_LAST = frozenset({_AWARDED_RESULT})

Write = tuple[str, tuple[Any, ...]]


async def project(conn: asyncpg.Connection, events: Iterable[Event]) -> None:
    """Updates the projections for `events`, one pipelined statement list per kind of write.

    Grouping by statement keeps the log order among writes of one kind, which is all the
    "first one wins" rules need; writes of different kinds touch different columns, but for
    the awarded result's, which reads the awards and so runs last.
    """
    grouped: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for event in events:
        for statement, args in writes(event):
            grouped[statement].append(args)
    for statement, rows in sorted(grouped.items(), key=lambda kind: kind[0] in _LAST):
        await conn.executemany(statement, rows)


def writes(event: Event) -> list[Write]:
    """What one event changes in the projections (pure: the tests and replay can call it)."""
    at = aware(event.occurred_at)
    match event:
        case TaskPosted():
            args = (event.task_id, event.kind, event.tenant, event.prompt, event.budget, at)
            return [(_TASK_POSTED, args)]
        case AuctionOpened():
            return [(_AUCTION_OPENED, (event.task_id, at, json.dumps(event.agents)))]
        case RefinementCalled():
            return [(_REFINEMENT_CALLED, _refinement_row(event, at))]
        case AuctionClosed() if event.lean is not None and event.winner_bid_id is not None:
            won = (_DRAFT_WON, (event.winner_bid_id, spend.draft_part(won=True)))
            return [(_AUCTION_CLOSED, _closed_row(event, at)), won, _awarded_result(event)]
        case AuctionClosed() if event.winner_bid_id is not None:
            closed = (_AUCTION_CLOSED, _closed_row(event, at))
            return [closed, *_scored_bids(event), _awarded_result(event)]
        case AuctionClosed():
            return [(_AUCTION_CLOSED, _closed_row(event, at)), *_scored_bids(event)]
        case BidSubmitted() if event.is_draft:
            return [(_BID_SUBMITTED, _bid_row(event, at)), _draft_spend(event)]
        case BidSubmitted():
            return [(_BID_SUBMITTED, _bid_row(event, at)), _spend(event, event.agent_id)]
        case ReviewSubmitted():
            return [(_REVIEW, _review_row(event, at)), _spend(event, event.juror)]
        case SubmissionRejected():
            return [(_REJECTION, _rejection_row(event, at))]
        case TaskResult():
            return [_awarded_result(event)]
        case TaskOutcome():
            args = (event.task_id, event.event_id, event.passed, event.score, event.details, at)
            return [(_OUTCOME, args)]
    return []  # TaskChecks, JuryCalled, AgentHeartbeat, DeadLetter: the log alone holds them


def _refinement_row(event: RefinementCalled, at: datetime) -> tuple[Any, ...]:
    return (
        event.task_id,
        at,
        event.provisional_bid_id,
        event.provisional_agent_id,
        event.provisional_score,
    )


def _closed_row(event: AuctionClosed, at: datetime) -> tuple[Any, ...]:
    return (
        event.task_id,
        at,
        event.reason,
        event.winner_agent_id,
        event.winner_bid_id,
        event.winning_plan,
        event.weights.model_dump_json(),
    )


def _scored_bids(event: AuctionClosed) -> list[Write]:
    return [
        (
            _BID_SCORED,
            (
                bid.bid_id,
                event.task_id,
                bid.agent_id,
                bid.round,
                bid.price,
                bid.plan_tokens,
                bid.entropy,
                json.dumps(bid.jury),
                bid.cost,
                bid.value,
                bid.score,
                bid.eligible,
                bid.ineligible_reason,
                bid.bid_id == event.winner_bid_id,
            ),
        )
        for bid in event.bids
    ]


def _bid_row(event: BidSubmitted, at: datetime) -> tuple[Any, ...]:
    return (
        event.bid_id,
        event.task_id,
        event.agent_id,
        event.round,
        event.price,
        event.plan_tokens,
        event.entropy,
        event.event_id,
        event.model,
        event.plan,
        json.dumps(event.memory_refs),
        *_usage(event.usage),
        at,
    )


def _review_row(event: ReviewSubmitted, at: datetime) -> tuple[Any, ...]:
    scores = {str(s.bid_id): s.score for s in event.scores}
    return (
        event.task_id,
        event.juror,
        event.round,
        event.event_id,
        json.dumps(scores),
        *_usage(event.usage),
        at,
    )


def _rejection_row(event: SubmissionRejected, at: datetime) -> tuple[Any, ...]:
    return (
        event.rejected_event_id,
        event.task_id,
        event.agent_id,
        event.submission,
        event.bid_id,
        event.reason,
        event.detail,
        at,
    )


def _awarded_result(event: AuctionClosed | TaskResult) -> Write:
    """The task's awarded result booked, if the award and the result are both in by now."""
    return (_AWARDED_RESULT, (event.task_id, spend.RESULT_PART))


def _spend_row(event: BidSubmitted | ReviewSubmitted, agent_id: str) -> tuple:
    """A spend row keeps the tokens by direction (prompt, of them held, generated), so that
    what a task spent can be priced again per direction (`sale report`); its part is the spend
    rule's (`marketplace.core.spend`), a draft's as if it lost."""
    usage = event.usage
    row = (*_usage(usage), usage.seconds, usage.cached_tokens)
    return (event.event_id, event.task_id, agent_id, spend.part(event), *row)


def _spend(event: BidSubmitted | ReviewSubmitted, agent_id: str) -> Write:
    return (_SPEND, _spend_row(event, agent_id))


def _draft_spend(event: BidSubmitted) -> Write:
    """A lean draft's row, booked as the winner's execution if its auction already closed on
    it (else as a bid, moved by the close)."""
    row = _spend_row(event, event.agent_id)
    return (_DRAFT_SPEND, (*row, event.bid_id, spend.part(event, won=True)))


def _usage(usage: Usage) -> tuple[int, int, int, float]:
    return (usage.requests, usage.prompt_tokens, usage.completion_tokens, usage.cost)
