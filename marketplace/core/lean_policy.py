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
  dearest agent (the reserve) is asked before the auction stops. A failing draft may go, as
  feedback, to the next and dearer agent (`Settings.feedback`; off unless the development split
  says it pays).
- **A task without examples goes where the operator says.** A general request, a search and a
  coding task that prints no example give nothing to check a draft against before it is
  graded: their first call goes to the agent `Settings.uncheckable` names (`pick`): by default
  the likeliest right (P(right) by the agent's record on the kind, not the task's neighbours;
  ties to the dearer, so with no memory the largest), or the cheapest, the dearest, or one
  agent by id. A general answer is checked for being there at all: an empty one goes on as a
  failing draft does. A search's or a coding task's draft, which nothing checks, wins as it
  is; only an agent that gives none hands the task to the next likeliest right.

Everything here takes values and returns values, so the auctioneer, replay and the benchmark
run the same decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from marketplace.shared.config import UNCHECKABLE_RULES


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
    uncheckable: str = "likeliest"  # who answers what cannot be checked: a rule or an agent id


RULES = UNCHECKABLE_RULES  # `Settings.uncheckable`, else an agent's id
UNCHECKED = "no example to check a draft against"  # the start of every uncheckable step's why


def settings_of(table: object, uncheckable: str = "likeliest") -> Settings:
    """Settings from a config table with the same fields (`[auction.lean]`, fitted) and the
    operator's `[auction] uncheckable`."""
    names = ("value", "neighbours", "strength", "min_similarity", "feedback")
    return Settings(**{name: getattr(table, name) for name in names}, uncheckable=uncheckable)


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


def p_right(e: Estimate) -> float:
    """The estimated chance the agent's draft is right, whatever its check says."""
    return e.examples_pass * e.right_if_pass + (1 - e.examples_pass) * e.right_if_fail


def likeliest(estimates: Sequence[Estimate], prices: Mapping[str, float]) -> list[str]:
    """The agents, likeliest right first; ties to the dearer (with no memory, the largest)."""
    ranked = sorted(estimates, key=lambda e: (-p_right(e), -prices[e.agent_id], e.agent_id))
    return [e.agent_id for e in ranked]


@dataclass(frozen=True)
class Step:
    """The auction's next move: ask `ask` (with the failing draft of `feedback_from`, if any),
    or stop and award `winner` (None only when nobody could be asked)."""

    ask: str | None = None
    feedback_from: str | None = None
    winner: str | None = None
    why: str = ""


def pick(rule: str, estimates: Sequence[Estimate], prices: Mapping[str, float]) -> Step:
    """Who answers an uncheckable task first under `rule` (`Settings.uncheckable`), and why."""
    if not estimates:
        return Step(why="nobody answered")
    by_price = sorted(estimates, key=lambda e: (prices[e.agent_id], e.agent_id))
    if rule == "cheapest":
        return Step(
            ask=by_price[0].agent_id, why=f"{UNCHECKED}: the cheapest, {by_price[0].agent_id}"
        )
    if rule == "dearest":
        return Step(
            ask=by_price[-1].agent_id, why=f"{UNCHECKED}: the dearest, {by_price[-1].agent_id}"
        )
    if rule not in RULES and rule in {e.agent_id for e in estimates}:
        return Step(ask=rule, why=f"{UNCHECKED}: the operator's choice, {rule}")
    first = likeliest(estimates, prices)[0]  # also for a chosen agent that is not live
    p = p_right(next(e for e in estimates if e.agent_id == first))
    return Step(ask=first, why=f"{UNCHECKED}: the likeliest right, {first} (P(right) {p:.3g})")


def picks(estimates: Sequence[Estimate], prices: Mapping[str, float], asked: str) -> list[Step]:
    """Every first call an uncheckable task may have had: each rule's pick, the operator's
    choice of `asked`, and the reserve (how the first call read before the rule existed). The
    rule is the operator's setting, not in the log: a replay checks the call is one of these."""
    steps = [pick(rule, estimates, prices) for rule in (*RULES, asked)]
    if estimates:
        dearest = max(estimates, key=lambda e: (prices[e.agent_id], e.agent_id)).agent_id
        steps.append(Step(ask=dearest, why=f"{UNCHECKED}: the reserve, {dearest}"))
    return steps


def next_step(
    estimates: Sequence[Estimate],
    prices: Mapping[str, float],
    drafts: Sequence[Draft],
    value: float,
    unanswered: Sequence[str] = (),
    feedback: bool = False,
    checkable: bool = True,
    first: Step | None = None,
) -> Step:
    """Given the drafts in hand (in the order they came), ask the next agent or stop.

    `unanswered` are agents asked who gave no draft (silent or failed): they count as asked.
    The first agent is always asked (someone must do the task); then calls go on while an
    unasked agent's reservation value beats the best draft in hand. The dearest agent is the
    reserve: while no draft in hand passes its examples, it is asked before the auction stops,
    whatever the estimates say (they are estimates; a failing draft is almost never right).
    With `feedback`, a dearer agent is shown the latest failing draft of a cheaper one to fix.
    A task that is not `checkable` gives no evidence: `first` (the operator's `pick`; default
    the likeliest right) is asked, and its draft wins unless it fails (`uncheckable_step`).
    """
    by_id = {e.agent_id: e for e in estimates}
    asked = {d.agent_id for d in drafts} | set(unanswered)
    left = [a for a in order(estimates, prices) if a not in asked]

    def ask(agent_id: str, why: str) -> Step:
        shown = _feedback(drafts, agent_id, prices) if feedback else None
        return Step(ask=agent_id, feedback_from=shown, why=why)

    if first is not None and not asked:
        return ask(first.ask, first.why) if first.ask else first
    if not checkable:
        return uncheckable_step(estimates, prices, drafts, value, asked, ask)
    dearest = max(estimates, key=lambda e: (prices[e.agent_id], e.agent_id), default=None)
    reserve = dearest.agent_id if dearest else None
    best = best_draft(drafts, by_id, prices, value)
    if best is None:
        return ask(left[0], "first") if left else Step(why="nobody answered")
    in_hand = worth(best, by_id, value)
    if left and by_id[left[0]].reservation > in_hand:
        hope = by_id[left[0]].reservation
        return ask(left[0], f"{left[0]} may beat the draft in hand ({hope:.4g} > {in_hand:.4g})")
    if not any(d.examples_pass for d in drafts) and reserve in left:
        return ask(reserve, f"no draft in hand passes its examples: the reserve, {reserve}")
    why = f"no agent left to ask can beat {best.agent_id}'s draft ({in_hand:.4g})"
    return Step(winner=best.agent_id, why=why)


def uncheckable_step(
    estimates: Sequence[Estimate],
    prices: Mapping[str, float],
    drafts: Sequence[Draft],
    value: float,
    asked: set[str],
    ask: Callable[[str, str], Step],
) -> Step:
    """`next_step` for a task nothing can check: the first call is the likeliest right's
    (unless the operator's `pick` came first); a draft in hand wins as it is, since nothing
    can tell a better one; an agent that gave none hands the task to the next likeliest."""
    best = best_draft(drafts, {e.agent_id: e for e in estimates}, prices, value)
    if best is not None:
        return Step(winner=best.agent_id, why=f"{UNCHECKED}: {best.agent_id}'s draft, unchecked")
    left = [a for a in likeliest(estimates, prices) if a not in asked]
    if not left:
        return Step(why="nobody answered")
    if not asked:
        first = pick("likeliest", estimates, prices)
        return ask(first.ask, first.why) if first.ask else first
    return ask(left[0], f"{UNCHECKED}, and no draft in hand: the next likeliest right, {left[0]}")


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
