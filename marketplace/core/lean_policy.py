"""The lean auction, pure: what the memory says of each agent in, whom to ask and who wins out.

The paper's auction asks every agent for a plan and a jury for scores; with small models those
signals barely predict success, and they cost as much as the work. The lean auction asks for
evidence instead, one agent at a time:

- **Value from the memory.** For each agent, the chance its draft passes the task's visible
  examples, and the chance a draft is right given that check, are estimated from its recorded
  drafts on the most similar past tasks, shrunk towards a prior fitted on the training split
  (`Prior`, pseudo-counts `strength`). The memory grows with every outcome: no retraining.
- **Calls for bids as a stopping problem** (Weitzman's Pandora's box). Asking agent a costs
  c_a (its expected draft cost) and reveals its draft's worth X_a = value · P(right | check).
  Each agent's reservation value r_a solves E[(X_a − r)⁺] = c_a; agents are asked in order of
  r_a, and the calls stop once the best draft in hand is worth at least every unasked agent's
  r_a. With equal chances that is cheapest first, and the dearest agent is the reserve.
- **Bids with evidence.** A bid is a draft and its verdict on the visible examples; the winner's
  draft is its result (never paid for twice). While no draft in hand passes its examples, the
  dearest agent (the reserve) is asked before the auction stops. A task that prints no
  example gives no evidence to gather: its drafts check nothing, so the reserve alone is asked
  (cheaper agents only if it gives no draft). A failing draft may go, as
  feedback, to the next and dearer agent (`Settings.feedback`; off unless the development split
  says it pays).

Everything here takes values and returns values, so the auctioneer, replay and the benchmark
run the same decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Prior:
    """What the training split says of one agent's drafts."""

    examples_pass: float  # P(the draft passes the visible examples)
    right_if_pass: float  # P(it passes the hidden checks | it passes the examples)
    right_if_fail: float  # P(it passes the hidden checks | it fails the examples)
    cost: float  # mean cost of a draft, in price units


@dataclass(frozen=True)
class Record:
    """One past draft in the memory, with the similarity of its task to the task at hand."""

    agent_id: str
    similarity: float
    examples_pass: bool
    right: bool | None  # known only for drafts that were graded (a winner's result)
    cost: float


@dataclass(frozen=True)
class Settings:
    value: float  # what a right answer is worth, in price units
    neighbours: int = 10  # past drafts of the agent read per estimate
    strength: float = 4.0  # the prior's weight, in drafts
    min_similarity: float = 0.0  # past drafts of less similar tasks say nothing of this one
    feedback: bool = False  # a dearer agent fixes a cheaper one's failing draft, or starts anew


def settings_of(table: object) -> Settings:
    """Settings from a config table with the same fields (`[auction.lean]`)."""
    names = ("value", "neighbours", "strength", "min_similarity", "feedback")
    return Settings(**{name: getattr(table, name) for name in names})


@dataclass(frozen=True)
class Estimate:
    """What the auction believes of one agent before asking it, and the resulting order."""

    agent_id: str
    examples_pass: float
    right_if_pass: float
    right_if_fail: float
    cost: float
    reservation: float


def shrunk(prior: float, observed: Sequence[float], strength: float) -> float:
    """The mean of `observed` with `strength` pseudo-observations at `prior`."""
    return (strength * prior + sum(observed)) / (strength + len(observed))


def reservation(value: float, p_pass: float, hi: float, lo: float, cost: float) -> float:
    """r solving E[(X − r)⁺] = cost for X = value·hi with probability p_pass, else value·lo."""
    x_hi, x_lo = value * hi, value * lo
    if p_pass > 0 and cost <= p_pass * (x_hi - x_lo):
        return x_hi - cost / p_pass
    return p_pass * x_hi + (1 - p_pass) * x_lo - cost


def estimate(
    agent_id: str, prior: Prior, records: Sequence[Record], settings: Settings
) -> Estimate:
    """The agent's estimate from its `settings.neighbours` most similar past drafts."""
    near = sorted((r for r in records if r.agent_id == agent_id), key=lambda r: -r.similarity)[
        : settings.neighbours
    ]
    graded = [r for r in near if r.right is not None]
    k = settings.strength
    examples_pass = shrunk(prior.examples_pass, [r.examples_pass for r in near], k)
    right_if_pass = shrunk(prior.right_if_pass, [r.right for r in graded if r.examples_pass], k)
    right_if_fail = shrunk(prior.right_if_fail, [r.right for r in graded if not r.examples_pass], k)
    cost = shrunk(prior.cost, [r.cost for r in near], k)
    return Estimate(
        agent_id,
        examples_pass,
        right_if_pass,
        right_if_fail,
        cost,
        reservation(settings.value, examples_pass, right_if_pass, right_if_fail, cost),
    )


@dataclass(frozen=True)
class Draft:
    """An agent's answer to a call for bids: whether its draft passes the visible examples."""

    agent_id: str
    examples_pass: bool


def worth(draft: Draft, estimates: Mapping[str, Estimate], value: float) -> float:
    """What a draft in hand is worth: the value of a right answer times its chance of being
    right given its verdict on the visible examples."""
    e = estimates[draft.agent_id]
    return value * (e.right_if_pass if draft.examples_pass else e.right_if_fail)


def order(estimates: Sequence[Estimate], prices: Mapping[str, float]) -> list[str]:
    """Whom to ask, first to last: highest reservation value first; ties to the cheaper."""
    ranked = sorted(estimates, key=lambda e: (-e.reservation, prices[e.agent_id], e.agent_id))
    return [e.agent_id for e in ranked]


@dataclass(frozen=True)
class Step:
    """The auction's next move: ask `ask` (with the failing draft of `feedback_from`, if any),
    or stop and award `winner` (None only when nobody could be asked)."""

    ask: str | None = None
    feedback_from: str | None = None
    winner: str | None = None
    why: str = ""


def next_step(
    estimates: Sequence[Estimate],
    prices: Mapping[str, float],
    drafts: Sequence[Draft],
    value: float,
    unanswered: Sequence[str] = (),
    feedback: bool = False,
    checkable: bool = True,
) -> Step:
    """Given the drafts in hand (in the order they came), ask the next agent or stop.

    `unanswered` are agents asked who gave no draft (silent or failed): they count as asked.
    The first agent is always asked (someone must do the task); then calls go on while an
    unasked agent's reservation value beats the best draft in hand. The dearest agent is the
    reserve: while no draft in hand passes its examples, it is asked before the auction stops,
    whatever the estimates say (they are estimates; a failing draft is almost never right).
    With `feedback`, a dearer agent is shown the latest failing draft of a cheaper one to fix.
    A task that is not `checkable` (it prints no example) gives no evidence: the reserve is
    asked first, and its draft, if it gives one, wins.
    """
    by_id = {e.agent_id: e for e in estimates}
    asked = {d.agent_id for d in drafts} | set(unanswered)
    left = [a for a in order(estimates, prices) if a not in asked]

    def ask(agent_id: str, why: str) -> Step:
        shown = _feedback(drafts, agent_id, prices) if feedback else None
        return Step(ask=agent_id, feedback_from=shown, why=why)

    dearest = max(estimates, key=lambda e: (prices[e.agent_id], e.agent_id), default=None)
    reserve = dearest.agent_id if dearest else None
    best = best_draft(drafts, by_id, prices, value)
    if not checkable and best is None and reserve in left:
        return ask(reserve, f"no example to check a draft against: the reserve, {reserve}")
    if best is None:
        return ask(left[0], "first") if left else Step(why="nobody answered")
    if not checkable:
        why = f"no example to check a draft against: {best.agent_id}'s draft, unchecked"
        return Step(winner=best.agent_id, why=why)
    in_hand = worth(best, by_id, value)
    if left and by_id[left[0]].reservation > in_hand:
        hope = by_id[left[0]].reservation
        return ask(left[0], f"{left[0]} may beat the draft in hand ({hope:.4g} > {in_hand:.4g})")
    if not any(d.examples_pass for d in drafts) and reserve in left:
        return ask(reserve, f"no draft in hand passes its examples: the reserve, {reserve}")
    why = f"no agent left to ask can beat {best.agent_id}'s draft ({in_hand:.4g})"
    return Step(winner=best.agent_id, why=why)


def best_draft(
    drafts: Sequence[Draft],
    estimates: Mapping[str, Estimate],
    prices: Mapping[str, float],
    value: float,
) -> Draft | None:
    """The draft worth most; ties to the cheaper agent, then the earlier draft."""
    if not drafts:
        return None
    ranked = sorted(
        enumerate(drafts),
        key=lambda item: (-worth(item[1], estimates, value), prices[item[1].agent_id], item[0]),
    )
    return ranked[0][1]


def _feedback(drafts: Sequence[Draft], asked: str, prices: Mapping[str, float]) -> str | None:
    """The latest failing draft of a cheaper agent, shown to a dearer one (escalation)."""
    for draft in reversed(drafts):
        if not draft.examples_pass and prices[draft.agent_id] < prices[asked]:
            return draft.agent_id
    return None
