"""Counterfactuals: history re-scored under other weights (`sale replay --weights`). Each closed
auction of the paper's mechanism is re-decided with what it recorded; the `Counterfactual`
says which winners change, what their plans cost, and what is known of how they would fare.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from marketplace.core import scoring
from marketplace.log.lines import bid_label
from marketplace.log.replay.history import Evidence, index
from schemas.events import AuctionClosed, Event, ScoredBid, Weights


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
