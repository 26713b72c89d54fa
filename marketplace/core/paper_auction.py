"""The paper's auction (SALE) as a pure state machine: bids with plans, a jury of the bidders,
refinement, a scored winner; events in, decisions out, no I/O and no clock. The shared fold
(task, pending inputs, open/reject/close) is `marketplace.core.auction_state.Folded`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from marketplace.core import scoring
from marketplace.core.auction_state import PRODUCER, Folded, Phase, Roster, Windows
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidSubmitted,
    Event,
    JuryCalled,
    RefinementCalled,
    RefinementInvite,
    ReviewSubmitted,
    ScoredBid,
    SubmissionRejected,
    Weights,
)


@dataclass
class PaperAuction(Folded):
    juries: dict[int, JuryCalled] = field(default_factory=dict)
    refinement: RefinementCalled | None = None
    reviews: dict[tuple[int, str], ReviewSubmitted] = field(default_factory=dict)

    # --- folding events in --------------------------------------------------------------

    def _fold_decision(self, event: Event) -> None:
        match event:
            case JuryCalled():
                self.juries[event.round] = event
                for bid in event.bids:
                    self.bids[bid.bid_id] = bid
            case RefinementCalled():
                self.refinement = event

    @property
    def phase(self) -> Phase:
        if self.closed:
            return "closed"
        if (self.refinement and 1 in self.juries) or (not self.refinement and 0 in self.juries):
            return "jury"
        if self.refinement:
            return "refining"
        return "bidding" if self.opened else "new"

    @property
    def round(self) -> int:
        return 1 if self.refinement else 0

    def deadline(self) -> datetime | None:
        match self.phase:
            case "bidding":
                return self.opened.bid_deadline
            case "jury":
                return self.juries[self.round].deadline
            case "refining":
                return self.refinement.deadline
        return None

    # --- deciding -----------------------------------------------------------------------

    def open(self, roster: Roster, windows: Windows, now: datetime) -> AuctionOpened:
        window = (
            timedelta(seconds=self.task.bid_window_s) if self.task.bid_window_s else windows.bid
        )
        return AuctionOpened(
            producer=PRODUCER,
            task_id=self.task_id,
            agents=roster.live(now, self.task.kind),
            bid_deadline=now + window,
        )

    def settle(
        self, roster: Roster, windows: Windows, weights: Weights, now: datetime
    ) -> list[Event]:
        """Judges pending inputs, then returns the decisions now due. Apply them afterwards."""
        if self.task is None and self.phase != "closed":
            return []  # inputs wait for their task (see `orphaned`)
        if self.phase == "new":
            return [self.open(roster, windows, now)]
        decisions: list[Event] = []
        for submission in self.pending:
            if rejection := self._judge(submission, roster, now):
                decisions.append(rejection)
        self.pending.clear()
        if self.phase != "closed" and self._phase_done(roster, now):
            decisions.append(self._next_phase(roster, windows, weights, now))
        return decisions

    def orphaned(self) -> list[SubmissionRejected]:
        """Refuses every pending input: their task never arrived."""
        rejections = [
            self._reject(s, getattr(s, "agent_id", None) or s.juror, "unknown_task")
            for s in self.pending
            if s.event_id not in self.rejected
        ]
        self.pending.clear()
        return rejections

    def _judge(
        self, submission: BidSubmitted | ReviewSubmitted, roster: Roster, now: datetime
    ) -> SubmissionRejected | None:
        """Accepts a submission into the state, or returns why not (None when already known)."""
        if submission.event_id in self.rejected:
            return None
        if isinstance(submission, BidSubmitted):
            if submission.bid_id in self.bids or self._frozen(submission.bid_id):
                return None
            reason = self._bid_problem(submission, roster, now)
            if reason is None:
                self.bids[submission.bid_id] = submission
            return self._reject(submission, submission.agent_id, reason)
        key = (submission.round, submission.juror)
        if self.reviews.get(key) == submission or self._counted(submission):
            return None
        reason = self._review_problem(submission, roster, now)
        if reason is None:
            self.reviews[key] = submission
        return self._reject(submission, submission.juror, reason)

    def _bid_problem(self, bid: BidSubmitted, roster: Roster, now: datetime) -> str | None:
        if bid.agent_id not in roster.beats:
            return "unknown_agent"
        if not roster.is_live(bid.agent_id, now):
            return "dead_agent"
        if bid.round == 1 and bid.agent_id not in self._invited():
            return "not_invited"
        if self.phase != ("bidding" if bid.round == 0 else "refining"):
            return "late"
        if any(b.agent_id == bid.agent_id and b.round == bid.round for b in self.bids.values()):
            return "duplicate"
        return None

    def _review_problem(self, review: ReviewSubmitted, roster: Roster, now: datetime) -> str | None:
        jury = self.juries.get(review.round)
        if review.juror not in roster.beats:
            return "unknown_agent"
        if jury is None or review.round != self.round or self.phase != "jury":
            return "late" if jury else "wrong_round"
        if review.juror not in jury.jurors:
            return "not_invited"
        if (review.round, review.juror) in self.reviews:
            return "duplicate"
        return None

    def _reject(
        self, submission: BidSubmitted | ReviewSubmitted, agent_id: str, reason: str | None
    ) -> SubmissionRejected | None:
        if reason is None:
            return None
        return self._refuse(submission, agent_id, reason, f"auction phase {self.phase}")

    def _frozen(self, bid_id: UUID) -> bool:
        """Whether the bid is part of a decision already taken (and so known, not new)."""
        decided = (self.closed.bids if self.closed else []) + (
            self.refinement.scored if self.refinement else []
        )
        return any(b.bid_id == bid_id for b in decided)

    def _counted(self, review: ReviewSubmitted) -> bool:
        """Whether a frozen round already holds this juror's scores."""
        decided = (self.closed.bids if self.closed else []) + (
            self.refinement.scored if self.refinement else []
        )
        return any(
            b.round == review.round and b.jury.get(review.juror) is not None for b in decided
        )

    def _invited(self) -> set[str]:
        return {i.agent_id for i in self.refinement.invites} if self.refinement else set()

    def _answered(self) -> set[str]:
        match self.phase:
            case "bidding":
                return {b.agent_id for b in self.bids.values() if b.round == 0}
            case "refining":
                return {b.agent_id for b in self.bids.values() if b.round == 1}
            case "jury":
                return {juror for (r, juror) in self.reviews if r == self.round}
        return set()

    def _expected(self) -> set[str]:
        match self.phase:
            case "bidding":
                return set(self.opened.agents)
            case "refining":
                return self._invited()
            case "jury":
                return set(self.juries[self.round].jurors)
        return set()

    def _phase_done(self, roster: Roster, now: datetime) -> bool:
        """A phase ends at its deadline, or early once every expected agent still live answered.

        With nobody expected (no live agent when it began) it runs to its deadline, so an agent
        that starts meanwhile can still take part.
        """
        if now >= self.deadline():
            return True
        expected = self._expected()
        return bool(expected) and all(
            a in self._answered() or not roster.is_live(a, now) for a in expected
        )

    def _next_phase(
        self, roster: Roster, windows: Windows, weights: Weights, now: datetime
    ) -> Event:
        round_bids = [b for b in self.bids.values() if b.round == self.round]
        if self.phase in ("bidding", "refining"):
            if not round_bids:
                return self._close(weights)
            # A juror whose weight is 0 cannot change any score: it is not asked, and with
            # nobody to ask the jury phase ends at once (its deadline is now).
            jurors = [a for a in roster.live(now) if scoring.juror_weight(weights, a) != 0]
            return JuryCalled(
                producer=PRODUCER,
                task_id=self.task_id,
                round=self.round,
                bids=sorted(round_bids, key=lambda b: (b.agent_id, str(b.bid_id))),
                jurors=jurors,
                deadline=now + windows.jury if jurors else now,
            )
        scored = self._score_round(self.round, weights)
        if self.round == 1:
            return self._close(weights)
        provisional = scoring.best(scored, round_=0)
        invited = (
            [a for a in scoring.refiners(provisional, scored) if roster.is_live(a, now)]
            if provisional
            else []
        )
        if not invited:
            return self._close(weights, scored)
        return RefinementCalled(
            producer=PRODUCER,
            task_id=self.task_id,
            provisional_bid_id=provisional.bid_id,
            provisional_agent_id=provisional.agent_id,
            provisional_score=provisional.score,
            invites=[RefinementInvite(agent_id=a) for a in invited],
            deadline=now + windows.refine,
            scored=scored,
        )

    def _score_round(self, round_: int, weights: Weights) -> list[ScoredBid]:
        jury = self.juries[round_]
        budget = self.task.budget
        scored = []
        for bid in jury.bids:
            scores = {juror: None for juror in jury.jurors}
            for juror in jury.jurors:
                review = self.reviews.get((round_, juror))
                given = {s.bid_id: s.score for s in review.scores} if review else {}
                scores[juror] = given.get(bid.bid_id)
            scored.append(scoring.score_bid(bid, scores, weights, budget))
        return scored

    def _close(self, weights: Weights, round0: list[ScoredBid] | None = None) -> AuctionClosed:
        scored = list(self.refinement.scored) if self.refinement else list(round0 or [])
        if 1 in self.juries:
            scored += self._score_round(1, weights)
        decision = scoring.decide(scored)
        winner = decision.winner
        return AuctionClosed(
            producer=PRODUCER,
            task_id=self.task_id,
            reason=decision.reason,
            winner_bid_id=winner.bid_id if winner else None,
            winner_agent_id=winner.agent_id if winner else None,
            winning_plan=self.bids[winner.bid_id].plan if winner else "",
            weights=weights,
            bids=scored,
        )
