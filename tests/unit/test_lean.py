"""The lean auction's decisions (`marketplace.core.lean_policy`), on hand-built cases worked
out by hand.

Value 1 throughout, so a draft's worth is its chance of being right. The two agents of most
cases: S, cheap, right 90% of the time when its draft passes the examples and never when it
fails; L, dear, surer of the examples, and sometimes right even when they fail.

    r_S = 0.9 − 0.01 / 0.5 = 0.88      (0.01 ≤ 0.5 · (0.9 − 0)   : the passing branch)
    r_L = 0.95 − 0.2 / 0.8 = 0.70      (0.2 ≤ 0.8 · (0.95 − 0.1) : the passing branch)
"""

from __future__ import annotations

import pytest

from marketplace.core import lean_policy
from marketplace.core.lean_policy import Draft, Estimate, Prior, Record, Settings


def est(agent: str, p: float, hi: float, lo: float, cost: float, value: float = 1.0) -> Estimate:
    return Estimate(agent, p, hi, lo, cost, lean_policy.reservation(value, p, hi, lo, cost))


S = est("S", 0.5, 0.9, 0.0, 0.01)
L = est("L", 0.8, 0.95, 0.1, 0.2)
PRICES = {"S": 0.05, "M": 0.1, "L": 0.36, "H": 0.01}


def test_the_reservation_value_solves_the_expected_excess_equation() -> None:
    # X = 0.8 w.p. 0.5, else 0; cost 0.1 ≤ 0.5 · 0.8: r = 0.8 − 0.1 / 0.5 = 0.6,
    # and indeed E[(X − 0.6)⁺] = 0.5 · 0.2 = 0.1.
    assert lean_policy.reservation(1.0, 0.5, 0.8, 0.0, 0.1) == pytest.approx(0.6)
    # cost 0.5 > 0.4: r sinks below the low outcome, r = E[X] − c = 0.4 − 0.5 = −0.1,
    # and E[(X + 0.1)⁺] = 0.5 · 0.9 + 0.5 · 0.1 = 0.5.
    assert lean_policy.reservation(1.0, 0.5, 0.8, 0.0, 0.5) == pytest.approx(-0.1)
    # the value scales the outcomes: X = 8 or 0, r = 8 − 0.1 / 0.5 = 7.8
    assert lean_policy.reservation(10.0, 0.5, 0.8, 0.0, 0.1) == pytest.approx(7.8)
    # a draft that never passes: X = lo for sure, r = value · lo − cost
    assert lean_policy.reservation(1.0, 0.0, 0.8, 0.2, 0.05) == pytest.approx(0.15)
    assert (S.reservation, L.reservation) == (pytest.approx(0.88), pytest.approx(0.70))


def test_estimates_shrink_the_nearest_drafts_towards_the_prior() -> None:
    prior = Prior(examples_pass=0.5, right_if_pass=0.5, right_if_fail=0.0, cost=0.02)
    records = [
        Record("S", 0.9, True, True, 0.01),
        Record("S", 0.8, True, None, 0.03),  # passed the examples, never graded
        Record("S", 0.1, False, False, 0.05),  # the least similar
        Record("L", 0.99, False, False, 1.0),  # another agent's
    ]
    e = lean_policy.estimate("S", prior, records, Settings(value=1.0, neighbours=2, strength=4.0))
    assert e.examples_pass == pytest.approx((4 * 0.5 + 2) / 6)  # two nearest both pass
    assert e.right_if_pass == pytest.approx((4 * 0.5 + 1) / 5)  # one of them graded, right
    assert e.right_if_fail == pytest.approx(0.0)  # no graded failing draft among the two
    assert e.cost == pytest.approx((4 * 0.02 + 0.01 + 0.03) / 6)
    assert e.reservation == pytest.approx(
        lean_policy.reservation(1.0, e.examples_pass, e.right_if_pass, e.right_if_fail, e.cost)
    )
    assert lean_policy.estimate("S", prior, [], Settings(value=1.0)) == Estimate(
        "S", 0.5, 0.5, 0.0, 0.02, lean_policy.reservation(1.0, 0.5, 0.5, 0.0, 0.02)
    )


def test_the_first_call_goes_to_the_highest_reservation_value() -> None:
    step = lean_policy.next_step([L, S], PRICES, [], 1.0)
    assert (step.ask, step.feedback_from, step.why) == ("S", None, "first")


def test_a_cheap_passing_draft_stops_the_calls_when_it_beats_the_dear_reservation() -> None:
    # S's passing draft is worth 0.9 > r_L = 0.70: asking L is not worth its cost.
    step = lean_policy.next_step([S, L], PRICES, [Draft("S", True)], 1.0)
    assert (step.ask, step.winner) == (None, "S")
    assert step.why == "no agent left to ask can beat S's draft (0.9)"


def test_a_cheap_failing_draft_escalates_to_the_dear_agent_with_it_as_feedback() -> None:
    # S's failing draft is worth 0 < r_L = 0.70.
    step = lean_policy.next_step([S, L], PRICES, [Draft("S", False)], 1.0, feedback=True)
    assert (step.ask, step.feedback_from) == ("L", "S")
    assert lean_policy.next_step([S, L], PRICES, [Draft("S", False)], 1.0).feedback_from is None
    assert step.why == "L may beat the draft in hand (0.7 > 0)"
    after = lean_policy.next_step([S, L], PRICES, [Draft("S", False), Draft("L", False)], 1.0)
    assert after.winner == "L"  # worth 0.1 against S's 0: even failing, L's is likelier right


def test_feedback_flows_only_from_a_cheaper_agent_to_a_dearer_one() -> None:
    # L is asked first here (r = 0.95 − 0.01 / 0.9 ≈ 0.939 > r_S = 0.88). Its failing draft
    # (worth 0.1) does not reach S, the cheaper; S's failing draft would reach a dearer M.
    sure_l = est("L", 0.9, 0.95, 0.1, 0.01)
    m = est("M", 0.5, 0.9, 0.0, 0.02)  # r = 0.86
    first = lean_policy.next_step([sure_l, S, m], PRICES, [], 1.0)
    assert first.ask == "L"
    second = lean_policy.next_step([sure_l, S, m], PRICES, [Draft("L", False)], 1.0, feedback=True)
    assert (second.ask, second.feedback_from) == ("S", None)
    failed = [Draft("L", False), Draft("S", False)]
    third = lean_policy.next_step([sure_l, S, m], PRICES, failed, 1.0, feedback=True)
    assert (third.ask, third.feedback_from) == ("M", "S")  # the latest failing cheaper draft


def test_an_agent_with_a_hopeless_estimate_is_never_asked() -> None:
    # H: r = 0.1 · 0.5 − 0.5 = −0.45 (0.5 > 0.1 · 0.5): below even a worthless draft in hand.
    hopeless = est("H", 0.1, 0.5, 0.0, 0.5)
    assert hopeless.reservation == pytest.approx(-0.45)
    first = lean_policy.next_step([S, hopeless], PRICES, [], 1.0)
    assert first.ask == "S"
    step = lean_policy.next_step([S, hopeless], PRICES, [Draft("S", False)], 1.0)
    assert (step.ask, step.winner) == (None, "S")


def test_ties_go_to_the_cheaper_agent_in_the_order_and_among_drafts() -> None:
    a, b = est("a", 0.5, 0.9, 0.0, 0.01), est("b", 0.5, 0.9, 0.0, 0.01)
    prices = {"a": 10.0, "b": 1.0}  # b is cheaper though a comes first by name
    assert lean_policy.order([a, b], prices) == ["b", "a"]
    assert lean_policy.next_step([a, b], prices, [], 1.0).ask == "b"
    both = [Draft("a", True), Draft("b", True)]
    assert lean_policy.best_draft(both, {"a": a, "b": b}, prices, 1.0) == Draft("b", True)


def test_an_agent_that_gave_no_draft_counts_as_asked() -> None:
    step = lean_policy.next_step([S, L], PRICES, [], 1.0, unanswered=["S"])
    assert (step.ask, step.why) == ("L", "first")
    nobody = lean_policy.next_step([S, L], PRICES, [], 1.0, unanswered=["S", "L"])
    assert (nobody.ask, nobody.winner, nobody.why) == (None, None, "nobody answered")


def test_the_worth_of_a_draft_follows_its_verdict_on_the_examples() -> None:
    by_id = {"S": S, "L": L}
    assert lean_policy.worth(Draft("L", True), by_id, 2.0) == pytest.approx(1.9)
    assert lean_policy.worth(Draft("L", False), by_id, 2.0) == pytest.approx(0.2)


def test_the_reserve_is_asked_while_no_draft_in_hand_passes_its_examples() -> None:
    # r_L = −0.2 here (hopeless by its estimate), below S's failing draft's worth 0; yet a
    # failing draft is almost never right, so the dearest agent is asked before stopping.
    doubtful_l = est("L", 0.1, 0.95, 0.0, 0.3)
    assert doubtful_l.reservation < 0
    step = lean_policy.next_step([S, doubtful_l], PRICES, [Draft("S", False)], 1.0)
    assert step.ask == "L" and step.why == "no draft in hand passes its examples: the reserve, L"
    passing = lean_policy.next_step([S, doubtful_l], PRICES, [Draft("S", True)], 1.0)
    assert passing.winner == "S"  # a passing draft in hand: the estimates decide


def test_a_task_without_examples_goes_to_the_likeliest_right_alone() -> None:
    # S would be asked first (see above), but its draft could show nothing: no example to run.
    # L is the likeliest right: 0.8 * 0.95 + 0.2 * 0.1 = 0.78 against S's 0.5 * 0.9 = 0.45.
    first = lean_policy.next_step([S, L], PRICES, [], 1.0, checkable=False)
    assert (first.ask, first.why) == (
        "L",
        "no example to check a draft against: the likeliest right, L (P(right) 0.78)",
    )
    done = lean_policy.next_step([S, L], PRICES, [Draft("L", True)], 1.0, checkable=False)
    assert (done.ask, done.winner) == (None, "L")
    assert done.why == "no example to check a draft against: L's draft, unchecked"


def test_without_examples_only_a_silent_first_hands_the_task_to_the_next_likeliest() -> None:
    next_up = "no example to check a draft against, and no draft in hand: "
    step = lean_policy.next_step([S, L], PRICES, [], 1.0, unanswered=["L"], checkable=False)
    assert (step.ask, step.why) == ("S", next_up + "the next likeliest right, S")
    failed = lean_policy.next_step([S, L], PRICES, [Draft("L", False)], 1.0, checkable=False)
    assert failed.winner == "L"  # nothing can tell a better draft: L's stands
    done = lean_policy.next_step([S, L], PRICES, [Draft("S", True)], 1.0, ["L"], checkable=False)
    assert done.winner == "S"
    silent = lean_policy.next_step([S, L], PRICES, [], 1.0, ["L", "S"], checkable=False)
    assert (silent.ask, silent.winner) == (None, None)


@pytest.mark.parametrize(
    ("rule", "asked", "why"),
    [
        ("likeliest", "L", "the likeliest right, L (P(right) 0.78)"),
        ("cheapest", "S", "the cheapest, S"),
        ("dearest", "L", "the dearest, L"),
        ("S", "S", "the operator's choice, S"),
        ("M", "L", "the likeliest right, L (P(right) 0.78)"),  # the chosen agent is not live
    ],
)
def test_the_operator_says_who_answers_what_cannot_be_checked(
    rule: str, asked: str, why: str
) -> None:
    step = lean_policy.pick(rule, [S, L], PRICES)
    assert (step.ask, step.why) == (asked, f"no example to check a draft against: {why}")
    first = lean_policy.next_step([S, L], PRICES, [], 1.0, checkable=False, first=step)
    assert (first.ask, first.why) == (step.ask, step.why)


def test_the_likeliest_right_ties_to_the_dearer_so_with_no_memory_the_largest() -> None:
    same = [est(a, 0.9, 1.0, 0.0, 0.01) for a in ("S", "M", "L")]  # the general prior, alike
    assert lean_policy.likeliest(same, PRICES) == ["L", "M", "S"]
    assert lean_policy.pick("likeliest", same, PRICES).ask == "L"
    sure_s = est("S", 0.99, 1.0, 0.0, 0.01)  # the memory says S always answers
    assert lean_policy.pick("likeliest", [sure_s, *same[1:]], PRICES).ask == "S"


def test_a_replay_knows_every_first_call_a_rule_could_make() -> None:
    steps = lean_policy.picks([S, L], PRICES, "S")
    shown = {(s.ask, s.why.split(": ", 1)[1]) for s in steps}
    assert shown == {
        ("L", "the likeliest right, L (P(right) 0.78)"),
        ("S", "the cheapest, S"),
        ("L", "the dearest, L"),
        ("S", "the operator's choice, S"),
        ("L", "the reserve, L"),  # how logs before the rule read
    }
