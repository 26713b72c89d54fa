"""Replay: every recorded auction decision recomputed, and history re-scored under other weights.

`AuctionClosed` carries every term of every bid's score and the weights, so each decision can be
recomputed from that one event with the very functions the auctioneer used (`scoring.rescore`,
`scoring.decide`): a difference means the log was changed, or the mechanism was. The rest of the
log is evidence for the terms themselves: the bids the jury was called on (`JuryCalled`), the
round-0 scores frozen at refinement (`RefinementCalled.scored`), the reviews that counted, the
task's budget. Evidence that is absent is not checked (a log read while the recorder lags, or
only some streams); evidence that is present must agree.

A lean auction (`marketplace.core.lean_policy`) is checked decision by decision: each
`BidRequested` and
its `AuctionClosed` must be what `lean.next_step` gives over the estimates and drafts in hand
they record; the estimates must be the first call's, each reservation value must follow from
its estimate, the drafts in hand must grow only by the answer of the agent last asked, and each
draft's verdict must be the one its `BidSubmitted` reported.

A refusal (`over_budget`, `marketplace.core.budget`) is recomputed from the terms it records
(the tenant's budget and spend, the task's budget, the cheapest live agent's expected cost),
and those of the task's own terms the log holds are checked against the task as posted.

The core is pure — events in, `Discrepancy` values or a `Counterfactual` out — so tests and
both sources (Postgres, or Kafka from offset 0) share it. The readers at the end do the I/O.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from marketplace.core import budget, lean_policy, scoring
from marketplace.core.lean_auction import checkable, step_for
from marketplace.log.gc_pause import paused_gc
from marketplace.log.lines import bid_label
from marketplace.shared.bus import reader
from marketplace.shared.config import BrokerConfig, Config, ConfigError
from marketplace.shared.errors import UserError
from marketplace.shared.offsets import highwater_marks
from schemas.codec import EventDecodeError, decode
from schemas.events import (
    AuctionClosed,
    BidRequested,
    BidSubmitted,
    Event,
    JuryCalled,
    LeanDraft,
    LeanEstimate,
    RefinementCalled,
    ReviewSubmitted,
    ScoredBid,
    SubmissionRejected,
    TaskOutcome,
    TaskPosted,
    Weights,
)
from schemas.topics import Topics

TOLERANCE = 1e-9  # floats survive JSON and jsonb exactly; this only absorbs summation order
Value = str | float | int | bool | None


@dataclass(frozen=True)
class Discrepancy:
    """One recorded value that replay does not reproduce, and what replay derived instead."""

    task_id: str
    field: str
    recorded: Value
    recomputed: Value

    def __str__(self) -> str:
        return (
            f"{self.task_id}: {self.field}: recorded {_show(self.recorded)}, "
            f"recomputed {_show(self.recomputed)}"
        )


def _show(value: Value) -> str:
    return f"{value:.12g}" if isinstance(value, float) else str(value)


def _same(recorded: Value, recomputed: Value) -> bool:
    if recorded == recomputed:  # nearly every value replay checks: no tolerance to work out
        return True
    numbers = (int, float)
    if isinstance(recorded, bool) or isinstance(recomputed, bool):
        return recorded == recomputed
    if isinstance(recorded, numbers) and isinstance(recomputed, numbers):
        return math.isclose(recorded, recomputed, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return recorded == recomputed


def _differ(task_id: str, name: str, recorded: Value, recomputed: Value) -> list[Discrepancy]:
    return [] if _same(recorded, recomputed) else [Discrepancy(task_id, name, recorded, recomputed)]


# --- the log, indexed by task -----------------------------------------------------------------


@dataclass
class Evidence:
    """What the rest of the log says about one auction; each part can confirm some terms."""

    task: TaskPosted | None = None
    juries: list[JuryCalled] = field(default_factory=list)
    refinement: RefinementCalled | None = None
    reviews: list[ReviewSubmitted] = field(default_factory=list)  # those not rejected
    outcome: TaskOutcome | None = None
    calls: list[BidRequested] = field(default_factory=list)  # lean
    drafts: dict[UUID, BidSubmitted] = field(default_factory=dict)  # lean, by bid id
    rejected_drafts: set[UUID] = field(default_factory=set)  # bid ids


@dataclass
class History:
    closed: dict[str, list[AuctionClosed]]
    evidence: dict[str, Evidence]


def index(events: Iterable[Event]) -> History:
    """Groups the log by task. Rejected reviews are dropped: the auction did not count them."""
    events = list(events)
    rejected = {e.rejected_event_id for e in events if isinstance(e, SubmissionRejected)}
    closed: dict[str, list[AuctionClosed]] = defaultdict(list)
    evidence: dict[str, Evidence] = defaultdict(Evidence)
    for event in events:
        match event:
            case AuctionClosed():
                closed[event.task_id].append(event)
            case TaskPosted():
                evidence[event.task_id].task = evidence[event.task_id].task or event
            case JuryCalled():
                evidence[event.task_id].juries.append(event)
            case RefinementCalled():
                evidence[event.task_id].refinement = event
            case ReviewSubmitted() if event.event_id not in rejected:
                evidence[event.task_id].reviews.append(event)
            case TaskOutcome():
                evidence[event.task_id].outcome = event
            case BidRequested():
                evidence[event.task_id].calls.append(event)
            case BidSubmitted() if event.is_draft:
                evidence[event.task_id].drafts.setdefault(event.bid_id, event)
                if event.event_id in rejected:
                    evidence[event.task_id].rejected_drafts.add(event.bid_id)
    return History(dict(closed), dict(evidence))


# --- verification -----------------------------------------------------------------------------


def verify(events: Iterable[Event]) -> list[Discrepancy]:
    """Every AuctionClosed in `events` recomputed and checked against the rest of the log."""
    with paused_gc():
        return _verify(index(events))


def _verify(history: History) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    for task_id, closes in history.closed.items():
        mine = _differ(task_id, "AuctionClosed events", len(closes), 1)
        for closed in closes:
            if closed.refused:
                mine += check_refusal(closed, history.evidence.get(task_id))
            elif closed.mechanism == "lean":
                mine += check_lean(closed, history.evidence.get(task_id))
            else:
                mine += check_closed(closed, history.evidence.get(task_id))
        found += sorted(dict.fromkeys(mine), key=_cause_first)  # once, however many saw it
    return found


def _cause_first(found: Discrepancy) -> int:
    """Within an auction, a named weight first, then the decision, then the terms it moved."""
    name = found.field
    return 0 if name.startswith("weights.") else 1 if not name.startswith("bids[") else 2


def check_closed(closed: AuctionClosed, evidence: Evidence | None = None) -> list[Discrepancy]:
    """One decision: its terms from the recorded weights, its winner from the terms, then the
    terms against the evidence."""
    recomputed = [scoring.rescore(bid, closed.weights) for bid in closed.bids]
    found = _terms(closed, recomputed) + _decision(closed, recomputed)
    found += _implied_weights(closed, recomputed)
    if evidence is not None:
        found += _against_evidence(closed, evidence)
    return found


def _terms(closed: AuctionClosed, recomputed: list[ScoredBid]) -> list[Discrepancy]:
    found = []
    for bid, again in zip(closed.bids, recomputed, strict=True):
        for name in ("cost", "value", "score"):
            where = f"bids[{bid_label(bid)}].{name}"
            found += _differ(closed.task_id, where, getattr(bid, name), getattr(again, name))
    return found


def _decision(closed: AuctionClosed, recomputed: list[ScoredBid]) -> list[Discrepancy]:
    """Winner and reason from the recomputed terms (recorded eligibility, the refined rule)."""
    decision = scoring.decide(recomputed)
    winner = decision.winner
    task_id = closed.task_id
    return [
        *_differ(task_id, "reason", closed.reason, decision.reason),
        *_differ(
            task_id,
            "winner_bid_id",
            _name_bid(closed, closed.winner_bid_id),
            _name_bid(closed, winner.bid_id if winner else None),
        ),
        *_differ(task_id, "winner_agent_id", closed.winner_agent_id, winner and winner.agent_id),
    ]


def _name_bid(closed: AuctionClosed, bid_id: UUID | None) -> str | None:
    if bid_id is None:
        return None
    named = [bid_label(b) for b in closed.bids if b.bid_id == bid_id]
    return f"{named[0]} ({bid_id})" if named else str(bid_id)


def _implied_weights(closed: AuctionClosed, recomputed: list[ScoredBid]) -> list[Discrepancy]:
    """A changed weight moves every bid's term in proportion to what that weight multiplies.
    When exactly one weight explains every difference, name it, with the weight the recorded
    terms imply: a tampered weight is reported as itself, not only as its symptoms."""
    pairs = list(zip(closed.bids, recomputed, strict=True))
    weights, found = closed.weights, []
    cost = _single_factor([(b.cost - a.cost, b.price * b.plan_tokens) for b, a in pairs])
    if cost is not None:
        found.append(Discrepancy(closed.task_id, "weights.cost", weights.cost, weights.cost + cost))
    coefficients = [(b.value - a.value, _value_coefficients(b, weights)) for b, a in pairs]
    fits = {
        name: delta
        for name in _value_weights(weights)
        if (delta := _single_factor([(d, c[name]) for d, c in coefficients])) is not None
    }
    if len(fits) == 1:
        [(name, delta)] = fits.items()
        current = _weight(weights, name)
        found.append(Discrepancy(closed.task_id, f"weights.{name}", current, current + delta))
    return found


def _value_weights(weights: Weights) -> list[str]:
    return ["entropy", "jury", *(f"jurors.{juror}" for juror in sorted(weights.jurors))]


def _weight(weights: Weights, name: str) -> float:
    if name.startswith("jurors."):
        return weights.jurors[name.removeprefix("jurors.")]
    return getattr(weights, name)


def _value_coefficients(bid: ScoredBid, weights: Weights) -> dict[str, float]:
    """What each value weight multiplies in this bid's value."""
    filled = scoring.filled_jury(bid.jury)
    unlisted = sum(s for juror, s in filled.items() if juror not in weights.jurors)
    listed = {f"jurors.{juror}": filled.get(juror, 0.0) for juror in weights.jurors}
    return {"entropy": bid.entropy, "jury": unlisted, **listed}


def _single_factor(pairs: list[tuple[float, float]]) -> float | None:
    """The one nonzero f with delta = f · coefficient for every (delta, coefficient), if any.

    Two nonzero coefficients at least: one bid alone fits any weight, and naming one would
    be a guess (its terms are reported either way)."""
    ratios = [delta / coef for delta, coef in pairs if abs(coef) > TOLERANCE]
    if len(ratios) < 2 or abs(ratios[0]) <= TOLERANCE:
        return None
    f = ratios[0]
    fits = all(math.isclose(d, f * c, rel_tol=1e-6, abs_tol=1e-9) for d, c in pairs)
    return f if fits else None


# --- the decision against the rest of the log -------------------------------------------------


def _against_evidence(closed: AuctionClosed, evidence: Evidence) -> list[Discrepancy]:
    return [
        *_budget(closed, evidence.task),
        *_juries(closed, evidence.juries),
        *_refinement(closed, evidence.refinement),
        *_reviews(closed, evidence.reviews),
    ]


def _budget(closed: AuctionClosed, task: TaskPosted | None) -> list[Discrepancy]:
    """Eligibility follows from the task's budget alone."""
    if task is None:
        return []
    found = []
    for bid in closed.bids:
        over = task.budget is not None and scoring.money(bid.price, bid.plan_tokens) > task.budget
        found += _differ(closed.task_id, f"bids[{bid_label(bid)}].eligible", bid.eligible, not over)
    return found


def _juries(closed: AuctionClosed, juries: list[JuryCalled]) -> list[Discrepancy]:
    """Each scored bid is a bid the jury was called on, unchanged, judged by those jurors; and
    each bid called to a jury is scored (the list is authoritative)."""
    found: list[Discrepancy] = []
    called = {bid.bid_id: (bid, jury) for jury in juries for bid in jury.bids}
    rounds = {jury.round for jury in juries}
    for scored in closed.bids:
        where = f"bids[{bid_label(scored)}]"
        if scored.bid_id not in called:
            if scored.round in rounds:
                found.append(Discrepancy(closed.task_id, where, "scored", "not called to a jury"))
            continue
        bid, jury = called[scored.bid_id]
        for name in ("agent_id", "round", "price", "plan_tokens", "entropy"):
            found += _differ(
                closed.task_id, f"{where}.{name}", getattr(scored, name), getattr(bid, name)
            )
        jurors = ", ".join(sorted(scored.jury))
        found += _differ(closed.task_id, f"{where}.jurors", jurors, ", ".join(sorted(jury.jurors)))
    scored_ids = {bid.bid_id for bid in closed.bids}
    for bid_id, (bid, _) in called.items():
        if bid_id not in scored_ids:
            where = f"bids[{bid_label(bid)}]"
            found.append(Discrepancy(closed.task_id, where, "missing", "called to a jury"))
    return found


def _refinement(closed: AuctionClosed, refinement: RefinementCalled | None) -> list[Discrepancy]:
    """Round 0 was frozen at refinement: the close must carry those very terms, and the
    provisional winner must be the best of them."""
    if refinement is None:
        return []
    task_id = closed.task_id
    found: list[Discrepancy] = []
    closing = {bid.bid_id: bid for bid in closed.bids if bid.round == 0}
    frozen = {bid.bid_id: bid for bid in refinement.scored}
    for bid_id in closing.keys() - frozen.keys():
        where = f"bids[{bid_label(closing[bid_id])}]"
        found.append(Discrepancy(task_id, where, "scored", "not scored at refinement"))
    for bid_id, then in frozen.items():
        found += _same_scored(task_id, closing.get(bid_id), then)
    provisional = scoring.best(
        [scoring.rescore(b, closed.weights) for b in refinement.scored], round_=0
    )
    if provisional is not None:
        name = "refinement.provisional_bid_id"
        found += _differ(task_id, name, str(refinement.provisional_bid_id), str(provisional.bid_id))
        name = "refinement.provisional_score"
        found += _differ(task_id, name, refinement.provisional_score, provisional.score)
    return found


def _same_scored(task_id: str, now: ScoredBid | None, then: ScoredBid) -> list[Discrepancy]:
    where = f"bids[{bid_label(then)}]"
    if now is None:
        return [Discrepancy(task_id, where, None, "scored at refinement")]
    found = []
    for name in ("agent_id", "price", "plan_tokens", "entropy", "cost", "value", "score"):
        found += _differ(task_id, f"{where}.{name}", getattr(now, name), getattr(then, name))
    found += _differ(task_id, f"{where}.eligible", now.eligible, then.eligible)
    for juror in sorted(now.jury.keys() | then.jury.keys()):
        found += _differ(
            task_id, f"{where}.jury.{juror}", now.jury.get(juror), then.jury.get(juror)
        )
    return found


def _reviews(closed: AuctionClosed, reviews: list[ReviewSubmitted]) -> list[Discrepancy]:
    """Each juror's score is what that juror's counted review gave the bid (None if it gave
    none). A juror re-sending a review after the close is ignored by the auction without a
    rejection, so any of the juror's unrejected reviews for the round may be the counted one."""
    given: dict[tuple[int, str], list[dict[UUID, float | None]]] = defaultdict(list)
    for review in reviews:
        scores = {s.bid_id: s.score for s in review.scores}
        given[(review.round, review.juror)].append(scores)
    found = []
    for bid in closed.bids:
        for juror, score in bid.jury.items():
            candidates = [scores.get(bid.bid_id) for scores in given.get((bid.round, juror), [])]
            if candidates and not any(_same(score, c) for c in candidates):
                where = f"bids[{bid_label(bid)}].jury.{juror}"
                found.append(Discrepancy(closed.task_id, where, score, candidates[0]))
    return found


# --- a refusal (over budget) ------------------------------------------------------------------


def check_refusal(closed: AuctionClosed, evidence: Evidence | None = None) -> list[Discrepancy]:
    """A refusal recomputed from its recorded terms (`budget.why_refused`); the task's own
    terms (tenant, budget) against the task as posted; and no agent was asked."""
    task_id, terms = closed.task_id, closed.refusal
    why = budget.why_refused(terms)
    found = [
        *_differ(task_id, "reason", closed.reason, "over_budget" if why else "not refused"),
        *_differ(task_id, "detail", closed.detail, why),
    ]
    if evidence is None:
        return found
    if evidence.task is not None:
        found += _differ(task_id, "refusal.tenant", terms.tenant, evidence.task.tenant)
        found += _differ(task_id, "refusal.task_budget", terms.task_budget, evidence.task.budget)
    if evidence.calls:
        found.append(Discrepancy(task_id, "calls", len(evidence.calls), "none: refused"))
    return found


# --- the lean auction -------------------------------------------------------------------------

Decision = BidRequested | AuctionClosed


def check_lean(closed: AuctionClosed, evidence: Evidence | None = None) -> list[Discrepancy]:
    """A lean auction's close, and its calls where the log holds them, each against
    `lean.next_step` over what it records, and what it records against the log."""
    task_id = closed.task_id
    if closed.lean is None:
        return [Discrepancy(task_id, "lean", None, "the terms of a lean close")]
    calls = sorted(evidence.calls, key=lambda c: c.call) if evidence else []
    numbers = ", ".join(str(c.call) for c in calls)
    found = _differ(task_id, "calls", numbers, ", ".join(str(n + 1) for n in range(len(calls))))
    decisions: list[Decision] = [*calls, closed]
    for previous, decision in zip([None, *decisions], decisions, strict=False):
        found += _lean_decision(task_id, decision, previous, decisions[0])
    if evidence is not None:
        found += _drafts_against_log(closed, decisions, evidence)
    return found


def _lean_terms(
    decision: Decision,
) -> tuple[list[LeanEstimate], float, list[LeanDraft], list[str], str]:
    if isinstance(decision, BidRequested):
        d = decision
        return d.estimates, d.value, d.drafts, d.unanswered, d.why
    t = decision.lean
    return t.estimates, t.value, t.drafts, t.unanswered, t.why


def _checkable(decision: Decision) -> bool:
    return decision.checkable if isinstance(decision, BidRequested) else decision.lean.checkable


def _lean_name(decision: Decision) -> str:
    return f"calls[{decision.call}]" if isinstance(decision, BidRequested) else "lean"


def _lean_decision(
    task_id: str, decision: Decision, previous: Decision | None, first: Decision
) -> list[Discrepancy]:
    name = _lean_name(decision)
    estimates, value, drafts, unanswered, _ = _lean_terms(decision)
    found = _reservations(task_id, name, estimates, value)
    if decision is not first:
        found += _same_estimates(task_id, name, decision, first)
    if previous is not None or isinstance(decision, BidRequested):  # calls absent: unchecked
        found += _chain(task_id, name, decision, previous)
    known = {e.agent_id for e in estimates}
    strangers = [d.agent_id for d in drafts if d.agent_id not in known] + [
        a for a in unanswered if a not in known
    ]
    if strangers:
        where = f"{name}.drafts[{strangers[0]}]"
        return [*found, Discrepancy(task_id, where, "in hand", "an agent with no estimate")]
    found += _worths(task_id, name, estimates, value, drafts)
    fixes = decision.fixes if isinstance(decision, BidRequested) else False
    step = step_for(estimates, value, drafts, unanswered, fixes, _checkable(decision))
    return found + _next_step(task_id, decision, step)


def _reservations(
    task_id: str, name: str, estimates: list[LeanEstimate], value: float
) -> list[Discrepancy]:
    found = []
    for e in estimates:
        again = lean_policy.reservation(
            value, e.examples_pass, e.right_if_pass, e.right_if_fail, e.cost
        )
        found += _differ(
            task_id, f"{name}.estimates[{e.agent_id}].reservation", e.reservation, again
        )
    return found


def _same_estimates(
    task_id: str, name: str, decision: Decision, first: Decision
) -> list[Discrepancy]:
    """Estimates are fixed at the first call: every later decision repeats them."""
    mine, value, *_ = _lean_terms(decision)
    theirs, first_value, *_ = _lean_terms(first)
    found = _differ(task_id, f"{name}.value", value, first_value)
    by_id = {e.agent_id: e for e in theirs}
    for e in mine:
        then = by_id.get(e.agent_id)
        if then is None:
            found.append(Discrepancy(task_id, f"{name}.estimates[{e.agent_id}]", "given", None))
            continue
        for term in ("examples_pass", "right_if_pass", "right_if_fail", "cost", "price"):
            where = f"{name}.estimates[{e.agent_id}].{term}"
            found += _differ(task_id, where, getattr(e, term), getattr(then, term))
    for agent_id in by_id.keys() - {e.agent_id for e in mine}:
        found.append(Discrepancy(task_id, f"{name}.estimates[{agent_id}]", None, "given"))
    return found


def _chain(
    task_id: str, name: str, decision: Decision, previous: Decision | None
) -> list[Discrepancy]:
    """The drafts in hand grow only by the answer of the agent asked last; no answer, and that
    agent joins the unanswered."""
    _, _, drafts, unanswered, _ = _lean_terms(decision)
    before, silent, asked = [], [], None
    if isinstance(previous, BidRequested):
        before, silent, asked = previous.drafts, previous.unanswered, previous.agent_id
    kept = _show_drafts(drafts[: len(before)])
    found = _differ(task_id, f"{name}.drafts", kept, _show_drafts(before))
    new = [d.agent_id for d in drafts[len(before) :]]
    if new and new != [asked]:
        allowed = f"at most a draft of {asked}" if asked else "no draft yet"
        found.append(Discrepancy(task_id, f"{name}.drafts", ", ".join(new), allowed))
    expected = ", ".join([*silent, *([] if new or asked is None else [asked])])
    return found + _differ(task_id, f"{name}.unanswered", ", ".join(unanswered), expected)


def _show_drafts(drafts: Sequence[LeanDraft]) -> str:
    verdicts = (f"{d.agent_id} {'passes' if d.examples_pass else 'fails'}" for d in drafts)
    return ", ".join(verdicts)


def _worths(
    task_id: str, name: str, estimates: list[LeanEstimate], value: float, drafts: list[LeanDraft]
) -> list[Discrepancy]:
    by_id = {e.agent_id: e for e in estimates}
    found = []
    for d in drafts:
        e = by_id[d.agent_id]
        again = value * (e.right_if_pass if d.examples_pass else e.right_if_fail)
        found += _differ(task_id, f"{name}.drafts[{d.agent_id}].worth", d.worth, again)
    return found


def _next_step(task_id: str, decision: Decision, step: lean_policy.Step) -> list[Discrepancy]:
    """The decision itself: whom it asked (with whose draft), or whom it awarded, and why."""
    name = _lean_name(decision)
    if isinstance(decision, BidRequested):
        feedback = decision.feedback.agent_id if decision.feedback else None
        return [
            *_differ(task_id, f"{name}.agent_id", decision.agent_id, step.ask),
            *_differ(task_id, f"{name}.feedback", feedback, step.feedback_from),
            *_differ(task_id, f"{name}.why", decision.why, step.why),
        ]
    winner = next((d for d in decision.lean.drafts if d.agent_id == step.winner), None)
    return [
        *_differ(task_id, "lean.ask", None, step.ask),
        *_differ(task_id, "reason", decision.reason, "awarded" if winner else "no_bids"),
        *_differ(task_id, "winner_agent_id", decision.winner_agent_id, step.winner),
        *_differ(
            task_id,
            "winner_bid_id",
            str(decision.winner_bid_id),
            str(winner.bid_id if winner else None),
        ),
        *_differ(task_id, "lean.why", decision.lean.why, step.why),
    ]


def _drafts_against_log(
    closed: AuctionClosed, decisions: list[Decision], evidence: Evidence
) -> list[Discrepancy]:
    """Each draft in hand is the draft its agent submitted, with its verdict, and was not
    refused; each draft the auction did not refuse is in hand at the close; the winning
    program is the winner's draft."""
    task_id = closed.task_id
    found: list[Discrepancy] = []
    listed = {d.bid_id: d for decision in decisions for d in _lean_terms(decision)[2]}
    for bid_id, d in listed.items():
        bid = evidence.drafts.get(bid_id)
        where = f"drafts[{d.agent_id}]"
        if bid_id in evidence.rejected_drafts:
            found.append(Discrepancy(task_id, where, "in hand", "refused by the auction"))
        if bid is not None:
            found += _differ(task_id, f"{where}.agent_id", d.agent_id, bid.agent_id)
            found += _differ(task_id, f"{where}.examples_pass", d.examples_pass, bid.examples_pass)
    in_hand = {d.bid_id for d in closed.lean.drafts}
    for bid_id, bid in evidence.drafts.items():
        if bid_id not in in_hand and bid_id not in evidence.rejected_drafts:
            where = f"drafts[{bid.agent_id}]"
            found.append(Discrepancy(task_id, where, "not in hand", "submitted and not refused"))
    won = evidence.drafts.get(closed.winner_bid_id) if closed.winner_bid_id else None
    if won is not None and won.plan != closed.winning_plan:
        found.append(Discrepancy(task_id, "winning_plan", "changed", "the winner's draft"))
    if evidence.task is not None:
        for decision in decisions:
            name = f"{_lean_name(decision)}.checkable"
            found += _differ(task_id, name, _checkable(decision), checkable(evidence.task))
    return found


# --- counterfactuals --------------------------------------------------------------------------


@dataclass(frozen=True)
class Flip:
    """An auction whose winning bid changes under the other weights (labels; None: no winner)."""

    task_id: str
    recorded: str | None
    counterfactual: str | None


@dataclass(frozen=True)
class Counterfactual:
    """History re-scored under other weights: which bids would have won, what their plans
    cost, and what is known of how they would have fared."""

    weights: Weights
    auctions: int
    flips: tuple[Flip, ...]
    recorded_cost: float  # Σ over winners of price × plan tokens / 10⁶
    counterfactual_cost: float
    recorded_wins: dict[str, int]  # agent → auctions won
    counterfactual_wins: dict[str, int]
    outcomes: int  # auctions with a TaskOutcome
    passed: int
    kept_outcomes: int  # of those, auctions whose winning bid stays: the outcome carries over
    kept_passed: int

    def render(self) -> str:
        return "\n".join(
            [
                f"re-scored {self.auctions} closed auctions under weights "
                f"{_show_weights(self.weights)}",
                *self._render_flips(),
                *self._render_wins(),
                self._render_cost(),
                self._render_pass_rate(),
            ]
        )

    def _render_flips(self) -> list[str]:
        lines = [f"winners changed in {len(self.flips)} of {self.auctions} auctions"]
        width = max((len(f.task_id) for f in self.flips), default=0)
        for flip in self.flips:
            new = flip.counterfactual or "no winner"
            lines.append(f"  {flip.task_id:<{width}}  {flip.recorded or 'no winner'} → {new}")
        return lines

    def _render_wins(self) -> list[str]:
        agents = sorted(self.recorded_wins.keys() | self.counterfactual_wins.keys())
        width = max([len("wins by agent"), *(len(a) + 2 for a in agents)])
        lines = [f"{'wins by agent':<{width}}  {'recorded':>8}  {'counterfactual':>14}"]
        for agent in agents:
            recorded, new = self.recorded_wins.get(agent, 0), self.counterfactual_wins.get(agent, 0)
            lines.append(f"{'  ' + agent:<{width}}  {recorded:>8}  {new:>14}")
        return lines

    def _render_cost(self) -> str:
        change = ""
        if self.recorded_cost:
            change = f" ({(self.counterfactual_cost / self.recorded_cost - 1) * 100:+.1f}%)"
        return (
            f"winners' plan cost (price × plan tokens / 10⁶): recorded {self.recorded_cost:.6g}, "
            f"counterfactual {self.counterfactual_cost:.6g}{change}"
        )

    def _render_pass_rate(self) -> str:
        if not self.outcomes:
            return "pass rate: no outcomes recorded"
        unknown = self.outcomes - self.kept_outcomes
        return (
            f"pass rate: recorded {_rate(self.passed, self.outcomes)}, counterfactual "
            f"{_rate(self.kept_passed, self.kept_outcomes)} where known; {unknown} unknown "
            "(a new winning plan was never executed)"
        )


def _rate(passed: int, of: int) -> str:
    return f"{passed}/{of} ({passed / of:.1%})" if of else "0/0"


def _show_weights(weights: Weights) -> str:
    jurors = ", ".join(f"{j}={w:g}" for j, w in sorted(weights.jurors.items()))
    text = f"cost={weights.cost:g} entropy={weights.entropy:g} jury={weights.jury:g}"
    return text + (f" jurors: {jurors}" if jurors else "")


def redecide(closed: AuctionClosed, weights: Weights) -> ScoredBid | None:
    """The winner had `weights` been in force. Refinement is only what was recorded: a refined
    bid counts only if its agent would still have been invited (strictly cheaper than the new
    provisional winner); an agent that would newly be invited has no bid to count."""
    bids = [scoring.rescore(bid, weights) for bid in closed.bids]
    provisional = scoring.best(bids, round_=0)
    invited = set(scoring.refiners(provisional, bids)) if provisional else set()
    kept = [bid for bid in bids if bid.round == 0 or bid.agent_id in invited]
    return scoring.decide(kept).winner


def counterfactual(events: Iterable[Event], weights: Weights) -> Counterfactual:
    """Every closed auction of the paper's mechanism (its last close, if the log holds several)
    re-decided; lean auctions have no weights to change."""
    history = index(events)
    flips: list[Flip] = []
    cost = {"recorded": 0.0, "counterfactual": 0.0}
    wins: dict[str, Counter[str]] = {"recorded": Counter(), "counterfactual": Counter()}
    outcomes = passed = kept_outcomes = kept_passed = 0
    paper = {
        t: closes
        for t, closes in history.closed.items()
        if closes[-1].mechanism == "paper" and not closes[-1].refused
    }
    for task_id, closes in paper.items():
        closed = closes[-1]
        was = next((b for b in closed.bids if b.bid_id == closed.winner_bid_id), None)
        now = redecide(closed, weights)
        for key, bid in (("recorded", was), ("counterfactual", now)):
            if bid is not None:
                cost[key] += scoring.money(bid.price, bid.plan_tokens)
                wins[key][bid.agent_id] += 1
        same = (was and was.bid_id) == (now and now.bid_id)
        if not same:
            flips.append(Flip(task_id, was and bid_label(was), now and bid_label(now)))
        outcome = history.evidence.get(task_id, Evidence()).outcome
        if outcome is not None and not outcome.answered and was is not None:
            outcomes, passed = outcomes + 1, passed + outcome.passed
            kept_outcomes, kept_passed = (
                kept_outcomes + same,
                kept_passed + (same and outcome.passed),
            )
    return Counterfactual(
        weights=weights,
        auctions=len(paper),
        flips=tuple(flips),
        recorded_cost=cost["recorded"],
        counterfactual_cost=cost["counterfactual"],
        recorded_wins=dict(wins["recorded"]),
        counterfactual_wins=dict(wins["counterfactual"]),
        outcomes=outcomes,
        passed=passed,
        kept_outcomes=kept_outcomes,
        kept_passed=kept_passed,
    )


# --- reading the log --------------------------------------------------------------------------

# What verification and counterfactuals use (bids: the lean auction's drafts).
STREAMS = ("tasks", "bids", "reviews", "auctions", "outcomes")
TYPES = (
    "TaskPosted",
    "BidSubmitted",
    "BidRequested",
    "ReviewSubmitted",
    "JuryCalled",
    "RefinementCalled",
    "SubmissionRejected",
    "AuctionClosed",
    "TaskOutcome",
)
STALL_S = 30.0


class LogUnavailable(UserError, RuntimeError):
    """The log cannot be read at all (no table, a broker that stops answering)."""


NO_LOG = (
    "the database holds no event log yet: has `sale run` (or `sale up` with the recorder) "
    "recorded anything with this config?"
)


@dataclass(frozen=True)
class Log:
    """The events read, and the records that no longer hold a valid event (a changed row)."""

    source: str
    events: list[Event]
    unreadable: list[Discrepancy]

    def report(self, found: Sequence[Discrepancy]) -> str:
        """The verdict: one line per difference, after a count of the decisions that differ."""
        found = [*self.unreadable, *found]
        auctions = sum(isinstance(e, AuctionClosed) for e in self.events)
        head = f"replayed {auctions} closed auctions from {self.source}"
        if not found:
            return f"{head}: every decision verified"
        tasks = len({d.task_id for d in found})
        return "\n".join([f"{head}: {tasks} differ", *(f"  {d}" for d in found)])


def _decoded(source: str, rows: Iterable[tuple[str, str, str | bytes]]) -> Log:
    events, unreadable = [], []
    with paused_gc():
        for task_id, where, raw in rows:
            try:
                events.append(decode(raw))
            except EventDecodeError as exc:
                unreadable.append(unreadable_row(task_id, where, exc))
    return Log(source, events, unreadable)


def unreadable_row(task_id: str, where: str, exc: EventDecodeError) -> Discrepancy:
    """A stored row or a record that no longer holds a valid event."""
    return Discrepancy(task_id, where, str(exc), "a valid event")


async def read(config: Config, from_kafka: bool = False) -> Log:
    """The log from where the config points: Postgres, or the broker's streams."""
    if from_kafka:
        if not config.broker.bootstrap:
            raise ConfigError("[broker].bootstrap: not set and KAFKA_BOOTSTRAP is empty")
        return await read_kafka(config.broker)
    if not config.database.url:
        raise ConfigError("[database].url: not set and DATABASE_URL is empty; which database?")
    return await read_postgres(config.database.url)


async def read_postgres(url: str) -> Log:
    """The replay's part of the log in recorded order; a row that no longer decodes is a
    discrepancy (the recorder stores only valid events), not a crash."""
    rows = await fetch_log(url, _REPLAYED, list(TYPES))
    return _decoded("postgres", ((r["task_id"] or "?", stored_at(r), r["payload"]) for r in rows))


_REPLAYED = "SELECT id, task_id, payload FROM events WHERE type = ANY($1::text[]) ORDER BY id"


async def fetch_log(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """Rows of the log (LogUnavailable if there is none)."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    except asyncpg.UndefinedTableError:
        raise LogUnavailable(NO_LOG) from None
    finally:
        await conn.close()


def stored_at(row: asyncpg.Record) -> str:
    return f"payload of events.id {row['id']}"


async def read_kafka(broker: BrokerConfig, streams: Sequence[str] = STREAMS) -> Log:
    """The streams from offset 0 up to their current end, with a consumer of no group: the
    replay neither commits nor takes partitions from anyone."""
    topics = Topics(broker.topic_prefix)
    ends = await highwater_marks(broker.bootstrap, [getattr(topics, s) for s in streams])
    wanted = {tp: end for tp, end in ends.items() if end > 0}
    consumer = await reader(broker)
    try:
        records = await _read_until(consumer, wanted) if wanted else []
    finally:
        await consumer.stop()
    # A malformed record elsewhere was dead-lettered where it arrived; one on `auctions`, the
    # auctioneer's own decisions, is a discrepancy.
    log = _decoded("kafka", (_row(r) for r in records if r.topic == topics.auctions))
    rest = _decoded("kafka", (_row(r) for r in records if r.topic != topics.auctions))
    return Log("kafka", log.events + rest.events, log.unreadable)


def _row(record: ConsumerRecord) -> tuple[str, str, bytes]:
    task_id = (record.key or b"?").decode(errors="replace")
    return task_id, f"{record.topic}[{record.partition}]@{record.offset}", record.value or b""


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> list[ConsumerRecord]:
    consumer.assign(list(ends))
    await consumer.seek_to_beginning(*ends)
    records: list[ConsumerRecord] = []
    progress = time.monotonic()
    while any([await consumer.position(tp) < end for tp, end in ends.items()]):
        fetched = await consumer.getmany(timeout_ms=200)
        for tp, batch in fetched.items():
            records += [r for r in batch if r.offset < ends[tp]]
            progress = time.monotonic() if batch else progress
        if time.monotonic() - progress > STALL_S:
            raise LogUnavailable(f"no records for {STALL_S:.0f}s before the end of the streams")
        await asyncio.sleep(0)
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
