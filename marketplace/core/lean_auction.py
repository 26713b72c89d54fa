"""One lean auction as a pure state machine: events in, decisions out, no I/O and no clock.

The lean auction (`marketplace.core.lean_policy`) asks one agent at a time for a draft and stops
once no agent left to ask can beat the best draft in hand. Its state is a fold over the
auction's events
— the task, the draft bids, and the auctioneer's own decisions (AuctionOpened, BidRequested,
SubmissionRejected, AuctionClosed) — as in
`marketplace.core.paper_auction`. Decisions are authoritative:
each call lists the drafts in hand and the agents asked who gave none, so once the next call
(or the close) is out no other draft of the previous call counts, whatever order a rebuilding
auctioneer reads the topics in.

The estimates come from the memory, which is I/O: the auctioneer computes them for the agents
`candidates` names and passes them to `settle`. From the first call on they are read from the
calls themselves, which repeat them, so a rebuilt auction needs no memory. Prices (for ordering
ties) are the agents' output prices from their heartbeats, fixed in the estimates at that call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol
from uuid import UUID

from marketplace.core import lean_policy
from marketplace.core.auction_state import PRODUCER, Folded, Roster, Windows
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidRequested,
    BidSubmitted,
    Event,
    FailedDraft,
    LeanClose,
    LeanDraft,
    LeanEstimate,
    ReviewSubmitted,
    SubmissionRejected,
    TaskPosted,
)

Phase = Literal["new", "calling", "closed"]
UNPRICED_DRAFT_TOKENS = 100  # an agent without a prior: its draft costs about this many tokens
ANSWERS = 0.9  # how often an agent is believed to answer a general task at all


# --- between lean's values and the events ----------------------------------------------------


class PriorLike(Protocol):
    examples_pass: float
    right_if_pass: float
    right_if_fail: float
    cost: float


def prior_for(
    priors: Mapping[str, PriorLike], agent_id: str, price: float, kind: str = "coding"
) -> lean_policy.Prior:
    """The agent's fitted prior (`[auction.lean.priors]`), or, for an agent the training split
    never saw, an agnostic one: a coin flip on the visible examples, a coin flip on the hidden
    checks when they pass, no chance when they fail, and a draft of about a hundred generated
    tokens at its output price (price × 1e-4). Agnostic, not pessimistic: its own drafts in the
    memory soon outweigh it.

    A general task (a prompt answered as text) has no examples and no hidden checks: its only
    check is whether the agent answered at all. Every agent gets the same prior for it (it
    almost always answers, and an answer is what was asked for), so with no memory the
    likeliest right is a tie, won by the dearest (`lean_policy.pick`); an empty answer goes on
    to the next."""
    if kind == "general":
        cost = price * UNPRICED_DRAFT_TOKENS / 1_000_000
        return lean_policy.Prior(ANSWERS, right_if_pass=1.0, right_if_fail=0.0, cost=cost)
    fitted = priors.get(agent_id)
    if fitted is None:
        cost = price * UNPRICED_DRAFT_TOKENS / 1_000_000
        return lean_policy.Prior(examples_pass=0.5, right_if_pass=0.5, right_if_fail=0.0, cost=cost)
    return lean_policy.Prior(
        fitted.examples_pass, fitted.right_if_pass, fitted.right_if_fail, float(fitted.cost)
    )


def recorded(estimate: lean_policy.Estimate, price: float) -> LeanEstimate:
    return LeanEstimate(
        agent_id=estimate.agent_id,
        examples_pass=estimate.examples_pass,
        right_if_pass=estimate.right_if_pass,
        right_if_fail=estimate.right_if_fail,
        cost=estimate.cost,
        reservation=estimate.reservation,
        price=price,
    )


def believed(estimate: LeanEstimate) -> lean_policy.Estimate:
    return lean_policy.Estimate(
        estimate.agent_id,
        estimate.examples_pass,
        estimate.right_if_pass,
        estimate.right_if_fail,
        estimate.cost,
        estimate.reservation,
    )


def step_for(
    estimates: Sequence[LeanEstimate],
    value: float,
    drafts: Sequence[LeanDraft],
    unanswered: Sequence[str],
    fixes: bool = False,
    checkable: bool = True,
    first: lean_policy.Step | None = None,
) -> lean_policy.Step:
    """`lean.next_step` over what a decision records: the one rule the auction and replay use.
    `first`: an uncheckable task's first call (`first_call`), which the log does not decide."""
    return lean_policy.next_step(
        [believed(e) for e in estimates],
        {e.agent_id: e.price for e in estimates},
        [lean_policy.Draft(d.agent_id, d.examples_pass) for d in drafts],
        value,
        unanswered,
        feedback=fixes,
        checkable=checkable,
        first=first,
    )


def first_call(estimates: Sequence[LeanEstimate], rule: str) -> lean_policy.Step:
    """Whom an uncheckable task asks first under the operator's `rule` (`lean_policy.pick`)."""
    prices = {e.agent_id: e.price for e in estimates}
    return lean_policy.pick(rule, [believed(e) for e in estimates], prices)


def first_calls(estimates: Sequence[LeanEstimate], asked: str) -> list[lean_policy.Step]:
    """Every first call an uncheckable task may have had (`lean_policy.picks`): a replay's."""
    prices = {e.agent_id: e.price for e in estimates}
    return lean_policy.picks([believed(e) for e in estimates], prices, asked)


def checkable(task: TaskPosted) -> bool:
    """Whether a draft of the task can be checked: it prints at least one example, or it is a
    general task, whose draft (the answer) is checked for being there at all."""
    return task.kind == "general" or has_examples(task)


def has_examples(task: TaskPosted) -> bool:
    """Whether the task prints an example. One that does not (a general request, a search, a
    coding task without examples) goes first where `[auction] uncheckable` says
    (`lean_policy.pick`), judged by each agent's record on the kind, not by the task's
    neighbours: the memory rates agents, and with nothing to check a draft against, a guess
    from a handful of neighbours is not corrected by anything before the task is graded."""
    return bool(getattr(task.inputs, "examples", None))


def in_hand(estimates: Sequence[LeanEstimate], value: float, bid: BidSubmitted) -> LeanDraft:
    """A draft as a decision lists it, with its worth under the estimates."""
    by_id = {e.agent_id: believed(e) for e in estimates}
    worth = lean_policy.worth(
        lean_policy.Draft(bid.agent_id, bool(bid.examples_pass)), by_id, value
    )
    return LeanDraft(
        agent_id=bid.agent_id, bid_id=bid.bid_id, examples_pass=bool(bid.examples_pass), worth=worth
    )


# --- the auction -----------------------------------------------------------------------------


@dataclass
class LeanAuction(Folded):
    calls: dict[int, BidRequested] = field(default_factory=dict)

    # --- folding events in --------------------------------------------------------------

    def _fold_decision(self, event: Event) -> None:
        if isinstance(event, BidRequested):
            self.calls[event.call] = event

    @property
    def phase(self) -> Phase:
        if self.closed:
            return "closed"
        return "calling" if self.opened else "new"

    @property
    def call(self) -> BidRequested | None:
        """The latest call for a draft."""
        return self.calls[max(self.calls)] if self.calls else None

    def deadline(self) -> datetime | None:
        if self.phase != "calling":
            return None
        return self.call.deadline if self.call else self.opened.bid_deadline

    def candidates(self, roster: Roster, now: datetime) -> list[str] | None:
        """The agents to estimate for the first call, when it is due and somebody can take it:
        the live agents of the task's kind. None: no estimates are needed now."""
        if self.task is None or self.closed or self.calls:
            return None
        return roster.live(now, self.task.kind) or None

    # --- deciding -----------------------------------------------------------------------

    def settle(
        self,
        roster: Roster,
        windows: Windows,
        value: float,
        now: datetime,
        estimates: Sequence[lean_policy.Estimate] | None = None,
        fixes: bool = False,
        uncheckable: str = "likeliest",
    ) -> list[Event]:
        """Judges pending drafts, then returns the decisions now due. Apply them afterwards.

        `value`, `estimates` (for the agents `candidates` names) and `uncheckable` (who answers
        a task nothing can check: `lean_policy.pick`) matter only for the first call; later
        calls take what they need from the calls before them. Without estimates while a first
        call is due, nothing is decided: the auction waits for them.
        """
        if self.task is None and self.phase != "closed":
            return []  # drafts wait for their task (see `orphaned`)
        if self.phase == "new":
            if estimates is None and self.candidates(roster, now):
                return []
            return self._open(roster, windows, value, now, estimates or (), fixes, uncheckable)
        decisions: list[Event] = []
        for submission in self.pending:
            if rejection := self._judge(submission, roster, now):
                decisions.append(rejection)
        self.pending.clear()
        if self.phase == "calling" and (
            decision := self._next(roster, windows, value, now, estimates, fixes, uncheckable)
        ):
            decisions.append(decision)
        return decisions

    def orphaned(self) -> list[SubmissionRejected]:
        """Refuses every pending input: their task never arrived."""
        rejections = [
            self._refuse(s, _sender(s), "unknown_task", "the task was never posted")
            for s in self.pending
            if s.event_id not in self.rejected
        ]
        self.pending.clear()
        return rejections

    def _window(self, windows: Windows) -> timedelta:
        return timedelta(seconds=self.task.bid_window_s) if self.task.bid_window_s else windows.bid

    def _open(
        self,
        roster: Roster,
        windows: Windows,
        value: float,
        now: datetime,
        estimates: Sequence[lean_policy.Estimate],
        fixes: bool = False,
        rule: str = "likeliest",
    ) -> list[Event]:
        agents = roster.live(now, self.task.kind)
        opened = AuctionOpened(
            producer=PRODUCER,
            task_id=self.task_id,
            agents=agents,
            bid_deadline=now + self._window(windows),
            mechanism="lean",
        )
        first = self._first_call(roster, windows, value, now, estimates, agents, fixes, rule)
        return [opened, first] if first else [opened]

    def _first_call(
        self,
        roster: Roster,
        windows: Windows,
        value: float,
        now: datetime,
        estimates: Sequence[lean_policy.Estimate],
        agents: Sequence[str],
        fixes: bool = False,
        rule: str = "likeliest",
    ) -> BidRequested | None:
        fixed = [
            recorded(e, roster.beats[e.agent_id].price) for e in estimates if e.agent_id in agents
        ]
        if not fixed:
            return None
        check = checkable(self.task)
        first = None if has_examples(self.task) else first_call(fixed, rule)
        step = step_for(fixed, value, [], [], fixes, check, first)
        deadline = now + self._window(windows)
        return self._ask(1, step, fixed, value, [], [], deadline, fixes, check)

    def _next(
        self,
        roster: Roster,
        windows: Windows,
        value: float,
        now: datetime,
        estimates: Sequence[lean_policy.Estimate] | None,
        fixes: bool = False,
        rule: str = "likeliest",
    ) -> Event | None:
        """The next call or the close, once the agent asked has answered, timed out or died."""
        call = self.call
        if call is None:  # nobody could be asked when the auction opened
            if estimates is not None and (agents := self.candidates(roster, now)):
                return self._first_call(roster, windows, value, now, estimates, agents, fixes, rule)
            if now < self.opened.bid_deadline:
                return None
            return self._close(step_for([], value, [], []), [], value, [], [])
        answer = self._answer(call)
        if answer is None and now < call.deadline and roster.is_live(call.agent_id, now):
            return None
        drafts = [*call.drafts, *([in_hand(call.estimates, call.value, answer)] if answer else [])]
        unanswered = [*call.unanswered, *([] if answer else [call.agent_id])]
        step = step_for(call.estimates, call.value, drafts, unanswered, call.fixes, call.checkable)
        if step.ask is None:
            return self._close(step, call.estimates, call.value, drafts, unanswered, call.checkable)
        deadline = now + self._window(windows)
        return self._ask(
            call.call + 1,
            step,
            call.estimates,
            call.value,
            drafts,
            unanswered,
            deadline,
            call.fixes,
            call.checkable,
        )

    def _answer(self, call: BidRequested) -> BidSubmitted | None:
        """The asked agent's accepted draft, if it came (each agent is asked at most once)."""
        listed = {d.bid_id for d in call.drafts}
        return next(
            (
                b
                for b in self.bids.values()
                if b.agent_id == call.agent_id and b.bid_id not in listed
            ),
            None,
        )

    def _ask(
        self,
        number: int,
        step: lean_policy.Step,
        estimates: Sequence[LeanEstimate],
        value: float,
        drafts: Sequence[LeanDraft],
        unanswered: Sequence[str],
        deadline: datetime,
        fixes: bool = False,
        check: bool = True,
    ) -> BidRequested:
        return BidRequested(
            producer=PRODUCER,
            task_id=self.task_id,
            call=number,
            agent_id=step.ask,
            estimates=list(estimates),
            value=value,
            why=step.why,
            feedback=self._feedback(step.feedback_from, drafts),
            fixes=fixes,
            deadline=deadline,
            drafts=list(drafts),
            unanswered=list(unanswered),
            checkable=check,
        )

    def _feedback(self, agent_id: str | None, drafts: Sequence[LeanDraft]) -> FailedDraft | None:
        if agent_id is None:
            return None
        draft = next(d for d in drafts if d.agent_id == agent_id)
        bid = self.bids.get(draft.bid_id)
        return FailedDraft(
            agent_id=agent_id,
            source=bid.plan if bid else "(the draft is not in the log)",
            error=(bid.failure if bid else None) or "it fails the visible examples",
        )

    def _close(
        self,
        step: lean_policy.Step,
        estimates: Sequence[LeanEstimate],
        value: float,
        drafts: Sequence[LeanDraft],
        unanswered: Sequence[str],
        check: bool = True,
    ) -> AuctionClosed:
        winner = next((d for d in drafts if d.agent_id == step.winner), None)
        bid = self.bids.get(winner.bid_id) if winner else None
        return AuctionClosed(
            producer=PRODUCER,
            task_id=self.task_id,
            reason="awarded" if winner else "no_bids",
            winner_bid_id=winner.bid_id if winner else None,
            winner_agent_id=winner.agent_id if winner else None,
            winning_plan=bid.plan if bid else "",
            mechanism="lean",
            lean=LeanClose(
                estimates=list(estimates),
                value=value,
                drafts=list(drafts),
                unanswered=list(unanswered),
                why=step.why,
                checkable=check,
            ),
        )

    # --- judging submissions ------------------------------------------------------------

    def _judge(
        self, submission: BidSubmitted | ReviewSubmitted, roster: Roster, now: datetime
    ) -> SubmissionRejected | None:
        """Accepts a draft into the state, or returns why not (None when already known)."""
        if submission.event_id in self.rejected:
            return None
        if isinstance(submission, ReviewSubmitted):
            return self._refuse(submission, submission.juror, "wrong_round", "no jury: lean")
        if submission.bid_id in self.bids:
            return None
        if submission.bid_id in self._decided():
            self.bids[submission.bid_id] = submission  # a decision already counted it
            return None
        reason = self._bid_problem(submission, roster, now)
        if reason is None:
            self.bids[submission.bid_id] = submission
            return None
        return self._refuse(submission, submission.agent_id, reason, self._state())

    def _bid_problem(self, bid: BidSubmitted, roster: Roster, now: datetime) -> str | None:
        if bid.agent_id not in roster.beats:
            return "unknown_agent"
        if not roster.is_live(bid.agent_id, now):
            return "dead_agent"
        if bid.agent_id not in {c.agent_id for c in self.calls.values()}:
            return "not_invited"
        if not bid.is_draft or bid.round != 0:
            return "wrong_round"
        if self.closed or self.call.agent_id != bid.agent_id:
            return "late"
        if any(b.agent_id == bid.agent_id for b in self.bids.values()):
            return "duplicate"
        return None

    def _decided(self) -> set[UUID]:
        """Drafts some decision already listed as in hand."""
        lists = [c.drafts for c in self.calls.values()]
        if self.closed and self.closed.lean:
            lists.append(self.closed.lean.drafts)
        return {d.bid_id for drafts in lists for d in drafts}

    def _state(self) -> str:
        if self.closed:
            return "lean auction closed"
        if self.call:
            return f"lean auction, call {self.call.call} asks {self.call.agent_id}"
        return "lean auction, nobody asked yet"


def _sender(submission: BidSubmitted | ReviewSubmitted) -> str:
    return submission.agent_id if isinstance(submission, BidSubmitted) else submission.juror
