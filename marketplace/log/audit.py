"""`sale audit TASK_ID`: the whole story of one task, told from the log alone.

An auditor asks what happened and in what order, why this bid won, what the task cost and
whether the result passed. Every answer is in the recorded events, so the story is rendered
from them (pure: stored events in, text out) rather than from projections the log could
contradict. Rejected bids and reviews appear in the story and in the cost: their tokens were
spent all the same.

A lean auction's story is its calls instead of its scores: the estimates it began with, whom it
asked and why, each draft's verdict on the visible examples, and why the calls stopped.

A search task's story adds its result's tool loop: each query issued and what it found, each
article read, and the answer, which the outcome then grades.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from marketplace.core import spend
from marketplace.log.lines import (
    ANSWERED_KINDS,
    Labels,
    bid_label,
    gist,
    labels_of,
    step_line,
    verdict,
)
from marketplace.log.replay.replayed_log import NO_LOG, LogUnavailable
from marketplace.log.store import StoredEvent, load_events
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidRequested,
    BidSubmitted,
    Event,
    LeanEstimate,
    RefinementCalled,
    ScoredBid,
    SubmissionRejected,
    TaskOutcome,
    TaskPosted,
    TaskResult,
    Usage,
    Weights,
)


def render(stored: Sequence[StoredEvent]) -> str:
    """The story: the task, its events in recorded order, the scores, winner, cost, outcome."""
    events = [s.event for s in stored]
    labels = labels_of(events)
    lean = _is_lean(events)
    closed = _last(events, AuctionClosed)
    if closed is not None and closed.refused:
        decided = [_refused(closed)]
    elif lean:
        decided = [_calls(events), _lean_winner(events)]
    else:
        decided = [_scores(events), _winner(events)]
    sections = [
        _header(events),
        _timeline(stored, labels),
        *decided,
        *_search(events),
        _costs(events),
        _outcome(events),
    ]
    return "\n\n".join(sections) + "\n"


def _refused(closed: AuctionClosed) -> str:
    """A task refused before any agent was asked, and every term the refusal was taken on."""
    t = closed.refusal

    def amount(value: float | None) -> str:
        return "none" if value is None else f"{value:.6g}"

    cheapest = (
        f"{t.cheapest_agent}, expected to cost {amount(t.cheapest_cost)}"
        if t.cheapest_agent
        else "none live"
    )
    return "\n".join(
        [
            f"refused ({closed.reason}): {closed.detail}",
            f"  tenant {t.tenant}: budget {amount(t.tenant_budget)}, spent "
            f"{t.tenant_spent:.6g} (as the log counted it then)",
            f"  the task's budget: {amount(t.task_budget)}",
            f"  the cheapest live agent: {cheapest}",
        ]
    )


def _first(events: list[Event], kind: type) -> Event | None:
    return next((e for e in events if isinstance(e, kind)), None)


def _last(events: list[Event], kind: type) -> Event | None:
    return next((e for e in reversed(events) if isinstance(e, kind)), None)


def _header(events: list[Event]) -> str:
    task_id = next((getattr(e, "task_id", None) for e in events), None) or "?"
    posted = _first(events, TaskPosted)
    if posted is None:
        return f"task {task_id} (its TaskPosted is not in the log)"
    budget = "none" if posted.budget is None else f"{posted.budget:g}"
    prompt = posted.prompt.strip().splitlines()[0][:100] if posted.prompt.strip() else ""
    return (
        f"task {task_id}: {posted.kind}, tenant {posted.tenant}, budget {budget}\n"
        f"  prompt: {prompt}"
    )


# --- the timeline -------------------------------------------------------------------------------


def _timeline(stored: Sequence[StoredEvent], labels: Labels) -> str:
    if not stored:
        return "events: none recorded"
    start = stored[0].event.occurred_at
    lines = [f"events ({len(stored)}, times UTC as the producers stamped them)"]
    for row in stored:
        at = row.event.occurred_at
        offset = (at - start).total_seconds()
        lines.append(f"  {_clock(at)}  {offset:+8.3f}s  {row.type:<18} {gist(row.event, labels)}")
    return "\n".join(lines)


def _clock(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# --- scores and winner --------------------------------------------------------------------------


def _scores(events: list[Event]) -> str:
    closed = _last(events, AuctionClosed)
    if closed is not None:
        return _score_table(closed.bids, closed.weights, "scores (lower wins)")
    refinement = _last(events, RefinementCalled)
    if refinement is not None:
        title = "round-0 scores as frozen at refinement (the auction has not closed)"
        return _score_table(refinement.scored, None, title)
    return "scores: none recorded (the auction has not been decided)"


def _score_table(bids: list[ScoredBid], weights: Weights | None, title: str) -> str:
    if weights is not None:
        title += f", weights {_weights(weights)}"
    head = f"  {'bid':<16} {'price':>8} {'tokens':>7} {'entropy':>8} {'cost':>10} "
    head += f"{'value':>10} {'score':>10}  eligible  jury"
    lines = [title, head]
    for bid in bids:
        lines.append(
            f"  {bid_label(bid):<16} {bid.price:>8.4g} {bid.plan_tokens:>7} {bid.entropy:>8.4g} "
            f"{bid.cost:>10.4g} {bid.value:>10.4g} {bid.score:>10.4g}  "
            f"{'yes' if bid.eligible else 'no':<8}  {_jury(bid)}"
        )
    ineligible = [b for b in bids if not b.eligible]
    lines += [f"  {bid_label(b)} is ineligible: {b.ineligible_reason}" for b in ineligible]
    if not bids:
        lines.append("  (no bids)")
    return "\n".join(lines)


def _jury(bid: ScoredBid) -> str:
    return " ".join(f"{j}={'-' if s is None else f'{s:g}'}" for j, s in sorted(bid.jury.items()))


def _weights(weights: Weights) -> str:
    text = f"cost {weights.cost:g}, entropy {weights.entropy:g}, jury {weights.jury:g}"
    return text + "".join(f", {j} {w:g}" for j, w in sorted(weights.jurors.items()))


def _winner(events: list[Event]) -> str:
    closed = _last(events, AuctionClosed)
    if closed is None:
        return "winner: none yet (the auction has not closed)"
    if closed.winner_bid_id is None:
        return f"winner: none ({closed.reason})"
    bid = next((b for b in closed.bids if b.bid_id == closed.winner_bid_id), None)
    label = bid_label(bid) if bid else str(closed.winner_bid_id)
    plan = "\n".join(f"    {line}" for line in closed.winning_plan.splitlines()[:8])
    return f"winner: {closed.winner_agent_id} with bid {label} ({closed.reason})\n  plan:\n{plan}"


# --- the lean auction: calls and drafts ---------------------------------------------------------


def _is_lean(events: list[Event]) -> bool:
    return any(
        (isinstance(e, AuctionOpened | AuctionClosed) and e.mechanism == "lean")
        or isinstance(e, BidRequested)
        for e in events
    )


def _calls(events: list[Event]) -> str:
    """Each call (who, why, the estimate), each draft's verdict, and why the calls stopped."""
    calls = sorted((e for e in events if isinstance(e, BidRequested)), key=lambda c: c.call)
    closed = _last(events, AuctionClosed)
    terms = closed.lean if closed is not None else None
    estimates = calls[0].estimates if calls else terms.estimates if terms else []
    value = calls[0].value if calls else terms.value if terms else None
    lines = [f"lean auction: a right answer is worth {value:g}" if value is not None else "lean"]
    lines += _estimate_table(estimates)
    lines.append("calls" if calls else "calls: none")
    drafts = {e.agent_id: e for e in events if isinstance(e, BidSubmitted) and e.is_draft}
    posted = _first(events, TaskPosted)
    general = posted is not None and posted.kind in ANSWERED_KINDS  # answers, not programs
    rejected = {e.rejected_event_id for e in events if isinstance(e, SubmissionRejected)}
    worth = {d.bid_id: d.worth for d in (terms.drafts if terms else [])}
    for call in calls:
        shown = f"; shown {call.feedback.agent_id}'s failing draft" if call.feedback else ""
        lines.append(f"  {call.call}. ask {call.agent_id}: {call.why}{shown}")
        draft = drafts.get(call.agent_id)
        if draft is None:
            lines.append("     no draft")
            continue
        counted = "" if draft.event_id not in rejected else ", not counted"
        held = f", worth {worth[draft.bid_id]:.4g}" if draft.bid_id in worth else ""
        lines.append(f"     draft: {verdict(draft, general)}{held}{counted}")
    if terms is None:
        lines.append("stopped: not yet (the auction has not closed)")
    else:
        lines.append(f"stopped: {terms.why}")
    return "\n".join(lines)


def _estimate_table(estimates: list[LeanEstimate]) -> list[str]:
    head = f"  {'agent':<16} {'price':>8} {'P(pass)':>8} {'P(right|pass)':>13} "
    head += f"{'P(right|fail)':>13} {'cost':>10} {'reservation':>11}"
    lines = ["estimates (from the memory, fixed at the first call; asked by reservation)", head]
    for e in sorted(estimates, key=lambda e: (-e.reservation, e.price, e.agent_id)):
        lines.append(
            f"  {e.agent_id:<16} {e.price:>8.4g} {e.examples_pass:>8.3g} {e.right_if_pass:>13.3g} "
            f"{e.right_if_fail:>13.3g} {e.cost:>10.4g} {e.reservation:>11.4g}"
        )
    return lines if estimates else [*lines, "  (no agent could be asked)"]


def _lean_winner(events: list[Event]) -> str:
    closed = _last(events, AuctionClosed)
    if closed is None:
        return "winner: none yet (the auction has not closed)"
    if closed.winner_bid_id is None:
        return f"winner: none ({closed.reason})"
    program = "\n".join(f"    {line}" for line in closed.winning_plan.splitlines()[:8])
    return (
        f"winner: {closed.winner_agent_id} with its draft ({closed.reason}); the draft is the "
        f"result, not executed again\n  draft:\n{program}"
    )


def _search(events: list[Event]) -> list[str]:
    """The tool loop of the result, a numbered line per step; nothing for a result without."""
    result = _last(events, TaskResult)
    if result is None or not result.steps:
        return []
    steps = [f"  {i}. {step_line(step)}" for i, step in enumerate(result.steps, start=1)]
    return ["\n".join([f"search: {result.agent_id}'s tool loop", *steps])]


# --- cost and outcome ---------------------------------------------------------------------------


def _costs(events: list[Event]) -> str:
    """What the task cost, by part of its life, booked by the one spend rule the `spend`
    projection and the `Outcome` book by (`marketplace.core.spend`)."""
    parts = spend.parts(events)
    total = sum(parts.values(), Usage())
    lines = ["cost", f"  {'part':<12} {'requests':>8} {'tokens':>9} {'cost':>12}"]
    for name, usage in [*parts.items(), ("total", total)]:
        lines.append(
            f"  {name:<12} {usage.requests:>8} {usage.total_tokens:>9} {usage.cost:>12.6g}"
        )
    return "\n".join(lines)


def _outcome(events: list[Event]) -> str:
    outcome = _last(events, TaskOutcome)
    if outcome is None:
        return "outcome: none recorded (the result has not been verified)"
    details = f": {outcome.details}" if outcome.details else ""
    if outcome.answered:
        return f"outcome: answered{details}"
    verdict = "passed" if outcome.passed else "failed"
    return f"outcome: {verdict}, score {outcome.score:g}{details}"


# --- reading ------------------------------------------------------------------------------------


async def load(url: str, task_id: str) -> list[StoredEvent]:
    """The task's events from the log, in recorded order."""
    conn = await asyncpg.connect(url)
    try:
        return await load_events(conn, task_id)
    except asyncpg.UndefinedTableError:
        raise LogUnavailable(NO_LOG) from None
    finally:
        await conn.close()
