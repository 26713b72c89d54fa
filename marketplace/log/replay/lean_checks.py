"""The lean auction checked (`marketplace.core.lean_policy`), decision by decision: each
`BidRequested` and its `AuctionClosed` must be what `lean.next_step` gives over the estimates
and drafts in hand they record; the estimates must be the first call's, each reservation value
must follow from its estimate, the drafts in hand must grow only by the answer of the agent
last asked, and each draft's verdict must be the one its `BidSubmitted` reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from marketplace.core import lean_policy
from marketplace.core.lean_auction import checkable, first_calls, step_for
from marketplace.log.replay.discrepancy import Discrepancy, differ
from marketplace.log.replay.history import Evidence
from schemas.events import AuctionClosed, BidRequested, LeanDraft, LeanEstimate

Decision = BidRequested | AuctionClosed


def check_lean(closed: AuctionClosed, evidence: Evidence | None = None) -> list[Discrepancy]:
    """A lean auction's close, and its calls where the log holds them, each against
    `lean.next_step` over what it records, and what it records against the log."""
    task_id = closed.task_id
    if closed.lean is None:
        return [Discrepancy(task_id, "lean", None, "the terms of a lean close")]
    calls = sorted(evidence.calls, key=lambda c: c.call) if evidence else []
    numbers = ", ".join(str(c.call) for c in calls)
    found = differ(task_id, "calls", numbers, ", ".join(str(n + 1) for n in range(len(calls))))
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
    check = _checkable(decision)
    first = _first_of_ruled(decision) if not drafts and not unanswered else None
    step = step_for(estimates, value, drafts, unanswered, fixes, check, first)
    return found + _next_step(task_id, decision, step)


def _first_of_ruled(decision: Decision) -> lean_policy.Step | None:
    """The first call of a task without examples, if it is one the operator's rule could make
    (`lean_auction.first_calls`): the rule is a setting, not in the log, so any of them is
    taken; None for any other (the call must then be the one the mechanism's order makes)."""
    if not isinstance(decision, BidRequested):
        return None
    steps = first_calls(decision.estimates, decision.agent_id)
    return next((s for s in steps if (s.ask, s.why) == (decision.agent_id, decision.why)), None)


def _reservations(
    task_id: str, name: str, estimates: list[LeanEstimate], value: float
) -> list[Discrepancy]:
    found = []
    for e in estimates:
        again = lean_policy.reservation(
            value, e.examples_pass, e.right_if_pass, e.right_if_fail, e.cost
        )
        found += differ(
            task_id, f"{name}.estimates[{e.agent_id}].reservation", e.reservation, again
        )
    return found


def _same_estimates(
    task_id: str, name: str, decision: Decision, first: Decision
) -> list[Discrepancy]:
    """Estimates are fixed at the first call: every later decision repeats them."""
    mine, value, *_ = _lean_terms(decision)
    theirs, first_value, *_ = _lean_terms(first)
    found = differ(task_id, f"{name}.value", value, first_value)
    by_id = {e.agent_id: e for e in theirs}
    for e in mine:
        then = by_id.get(e.agent_id)
        if then is None:
            found.append(Discrepancy(task_id, f"{name}.estimates[{e.agent_id}]", "given", None))
            continue
        for term in ("examples_pass", "right_if_pass", "right_if_fail", "cost", "price"):
            where = f"{name}.estimates[{e.agent_id}].{term}"
            found += differ(task_id, where, getattr(e, term), getattr(then, term))
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
    found = differ(task_id, f"{name}.drafts", kept, _show_drafts(before))
    new = [d.agent_id for d in drafts[len(before) :]]
    if new and new != [asked]:
        allowed = f"at most a draft of {asked}" if asked else "no draft yet"
        found.append(Discrepancy(task_id, f"{name}.drafts", ", ".join(new), allowed))
    expected = ", ".join([*silent, *([] if new or asked is None else [asked])])
    return found + differ(task_id, f"{name}.unanswered", ", ".join(unanswered), expected)


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
        found += differ(task_id, f"{name}.drafts[{d.agent_id}].worth", d.worth, again)
    return found


def _next_step(task_id: str, decision: Decision, step: lean_policy.Step) -> list[Discrepancy]:
    """The decision itself: whom it asked (with whose draft), or whom it awarded, and why."""
    name = _lean_name(decision)
    if isinstance(decision, BidRequested):
        feedback = decision.feedback.agent_id if decision.feedback else None
        return [
            *differ(task_id, f"{name}.agent_id", decision.agent_id, step.ask),
            *differ(task_id, f"{name}.feedback", feedback, step.feedback_from),
            *differ(task_id, f"{name}.why", decision.why, step.why),
        ]
    winner = next((d for d in decision.lean.drafts if d.agent_id == step.winner), None)
    return [
        *differ(task_id, "lean.ask", None, step.ask),
        *differ(task_id, "reason", decision.reason, "awarded" if winner else "no_bids"),
        *differ(task_id, "winner_agent_id", decision.winner_agent_id, step.winner),
        *differ(
            task_id,
            "winner_bid_id",
            str(decision.winner_bid_id),
            str(winner.bid_id if winner else None),
        ),
        *differ(task_id, "lean.why", decision.lean.why, step.why),
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
            found += differ(task_id, f"{where}.agent_id", d.agent_id, bid.agent_id)
            found += differ(task_id, f"{where}.examples_pass", d.examples_pass, bid.examples_pass)
    in_hand = {d.bid_id for d in closed.lean.drafts}
    for bid_id, bid in evidence.drafts.items():
        if bid_id not in in_hand and bid_id not in evidence.rejected_drafts:
            where = f"drafts[{bid.agent_id}]"
            found.append(Discrepancy(task_id, where, "not in hand", "submitted and not refused"))
    won = evidence.drafts.get(closed.winner_bid_id) if closed.winner_bid_id else None
    if won is not None and won.plan != closed.winning_plan:
        found.append(Discrepancy(task_id, "winning_plan", "changed", "the winner's draft"))
    if evidence.task is not None:
        expected = checkable(evidence.task)
        for decision in decisions:
            name = f"{_lean_name(decision)}.checkable"
            found += differ(task_id, name, _checkable(decision), expected)
    return found
