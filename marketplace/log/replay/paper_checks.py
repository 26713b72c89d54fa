"""The paper's auction checked: a close's terms recomputed from its recorded weights with the
very functions the auctioneer used (`scoring.rescore`, `scoring.decide`), its winner from those
terms, a single changed weight named as itself; then the terms against the rest of the log (the
task's budget, the bids the jury was called on, the round-0 scores frozen at refinement, the
reviews that counted). A difference means the log was changed, or the mechanism was.
"""

from __future__ import annotations

import math
from collections import defaultdict
from uuid import UUID

from marketplace.core import scoring
from marketplace.log.lines import bid_label
from marketplace.log.replay.discrepancy import TOLERANCE, Discrepancy, differ, same
from marketplace.log.replay.history import Evidence
from schemas.events import (
    AuctionClosed,
    JuryCalled,
    RefinementCalled,
    ReviewSubmitted,
    ScoredBid,
    TaskPosted,
    Weights,
)


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
            found += differ(closed.task_id, where, getattr(bid, name), getattr(again, name))
    return found


def _decision(closed: AuctionClosed, recomputed: list[ScoredBid]) -> list[Discrepancy]:
    """Winner and reason from the recomputed terms (recorded eligibility, the refined rule)."""
    decision = scoring.decide(recomputed)
    winner = decision.winner
    task_id = closed.task_id
    return [
        *differ(task_id, "reason", closed.reason, decision.reason),
        *differ(
            task_id,
            "winner_bid_id",
            _name_bid(closed, closed.winner_bid_id),
            _name_bid(closed, winner.bid_id if winner else None),
        ),
        *differ(task_id, "winner_agent_id", closed.winner_agent_id, winner and winner.agent_id),
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
        found += differ(closed.task_id, f"bids[{bid_label(bid)}].eligible", bid.eligible, not over)
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
            found += differ(
                closed.task_id, f"{where}.{name}", getattr(scored, name), getattr(bid, name)
            )
        jurors = ", ".join(sorted(scored.jury))
        found += differ(closed.task_id, f"{where}.jurors", jurors, ", ".join(sorted(jury.jurors)))
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
        found += differ(task_id, name, str(refinement.provisional_bid_id), str(provisional.bid_id))
        name = "refinement.provisional_score"
        found += differ(task_id, name, refinement.provisional_score, provisional.score)
    return found


def _same_scored(task_id: str, now: ScoredBid | None, then: ScoredBid) -> list[Discrepancy]:
    where = f"bids[{bid_label(then)}]"
    if now is None:
        return [Discrepancy(task_id, where, None, "scored at refinement")]
    found = []
    for name in ("agent_id", "price", "plan_tokens", "entropy", "cost", "value", "score"):
        found += differ(task_id, f"{where}.{name}", getattr(now, name), getattr(then, name))
    found += differ(task_id, f"{where}.eligible", now.eligible, then.eligible)
    for juror in sorted(now.jury.keys() | then.jury.keys()):
        found += differ(task_id, f"{where}.jury.{juror}", now.jury.get(juror), then.jury.get(juror))
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
            if candidates and not any(same(score, c) for c in candidates):
                where = f"bids[{bid_label(bid)}].jury.{juror}"
                found.append(Discrepancy(closed.task_id, where, score, candidates[0]))
    return found
