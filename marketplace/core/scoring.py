"""The SALE scoring mechanism, pure: bids and jury scores in, scores and a winner out.

    cost  C = w_c · price · plan_tokens          (price: the bidder's output price, per Mtok)
    value V = w_h · entropy + Σ_j w_j · score_j   (every juror j, the bidder included)
    score   = C − V                               lower wins

A bid's price is its agent's output price: a plan is generated text, so that is what writing
it costs per token (`schemas.events.Price`; input and cached prices matter only to what a task
spends, which `marketplace.core.measures` prices per direction).

Rules the paper leaves open, stated here so a replay can apply them exactly:
- Missing jury score (juror timed out, answer unreadable): the juror counts with the mean of
  the other jurors' scores for the same bid, so one silent juror does not tilt the auction;
  a bid no juror scored gets 0 from each.
- Ties: lower score, then lower price, then fewer plan tokens, then agent id, then round,
  then bid id — a total order, so the same inputs always give the same winner.
- Budget: a bid whose plan alone costs more than the task's budget (price × plan tokens,
  in currency) is ineligible, and says so.
- Refinement: only agents strictly cheaper than the provisional winner refine; the best
  refined bid wins only if its score is strictly lower than the provisional winner's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import fmean
from typing import Literal

from schemas.events import BidSubmitted, ScoredBid, Weights

TOKENS_PER_PRICE_UNIT = 1_000_000


def filled_jury(jury: Mapping[str, float | None]) -> dict[str, float]:
    """Each juror's score, a missing one replaced by the mean of the present ones (or 0)."""
    present = [s for s in jury.values() if s is not None]
    fill = fmean(present) if present else 0.0
    return {juror: fill if s is None else s for juror, s in jury.items()}


def juror_weight(weights: Weights, juror: str) -> float:
    return weights.jurors.get(juror, weights.jury)


def money(price: float, tokens: int) -> float:
    """What `tokens` tokens cost at one `price` per million: the budget check's plan cost, at
    the bid's (output) price. What a task spent is priced per direction instead
    (`marketplace.core.measures.cost`)."""
    return price * tokens / TOKENS_PER_PRICE_UNIT


def terms(
    price: float,
    plan_tokens: int,
    entropy: float,
    jury: Mapping[str, float | None],
    weights: Weights,
) -> tuple[float, float]:
    """(cost, value) of one bid."""
    cost = weights.cost * price * plan_tokens
    value = weights.entropy * entropy + sum(
        juror_weight(weights, juror) * s for juror, s in filled_jury(jury).items()
    )
    return cost, value


def score_bid(
    bid: BidSubmitted,
    jury: Mapping[str, float | None],
    weights: Weights,
    budget: float | None = None,
) -> ScoredBid:
    cost, value = terms(bid.price, bid.plan_tokens, bid.entropy, jury, weights)
    over = budget is not None and money(bid.price, bid.plan_tokens) > budget
    return ScoredBid(
        bid_id=bid.bid_id,
        agent_id=bid.agent_id,
        round=bid.round,
        price=bid.price,
        plan_tokens=bid.plan_tokens,
        entropy=bid.entropy,
        jury=dict(jury),
        cost=cost,
        value=value,
        score=cost - value,
        eligible=not over,
        ineligible_reason=f"its plan costs more than the budget {budget}" if over else "",
    )


def rescore(bid: ScoredBid, weights: Weights) -> ScoredBid:
    """The same bid's terms recomputed under `weights`: replay and counterfactuals use this."""
    cost, value = terms(bid.price, bid.plan_tokens, bid.entropy, bid.jury, weights)
    return bid.model_copy(update={"cost": cost, "value": value, "score": cost - value})


def rank(bid: ScoredBid) -> tuple[float, float, int, str, int, str]:
    """The tie-break order: the smallest rank wins."""
    return (bid.score, bid.price, bid.plan_tokens, bid.agent_id, bid.round, str(bid.bid_id))


def best(bids: Iterable[ScoredBid], round_: int) -> ScoredBid | None:
    return min((b for b in bids if b.eligible and b.round == round_), key=rank, default=None)


def refiners(provisional: ScoredBid, round0: Iterable[ScoredBid]) -> list[str]:
    """Agents invited to refine: round-0 bidders strictly cheaper than the provisional winner."""
    return sorted({b.agent_id for b in round0 if b.round == 0 and b.price < provisional.price})


@dataclass(frozen=True)
class Decision:
    winner: ScoredBid | None
    reason: Literal["awarded", "refined", "no_bids", "no_eligible_bids"]


def decide(bids: list[ScoredBid]) -> Decision:
    """The final decision over all scored bids of both rounds."""
    provisional = best(bids, round_=0)
    if provisional is None:
        return Decision(None, "no_eligible_bids" if bids else "no_bids")
    refined = best(bids, round_=1)
    if refined is not None and refined.score < provisional.score:
        return Decision(refined, "refined")
    return Decision(provisional, "awarded")
