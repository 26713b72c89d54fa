"""Budgets: which tasks are refused before any agent is asked, said in words, replayed exactly,
and told in the audit and the monitor's lines."""

from __future__ import annotations

import pytest

from marketplace.core import budget
from marketplace.log import audit, replay
from marketplace.log.lines import gist
from marketplace.log.outcomes import fold
from marketplace.log.store import StoredEvent
from marketplace.shared.config import ConfigError, parse_config
from schemas.events import GeneralInputs, Refusal, TaskPosted
from tests.samples import LATER

EXPECTED = {"large": 0.2, "small": 0.01, "tiny": 0.01}  # tiny and small tie: the first id


def task(budget_: float | None = None, tenant: str = "acme") -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id="a1",
        kind="general",
        prompt="Name three primes.",
        inputs=GeneralInputs(),
        tenant=tenant,
        budget=budget_,
    )


def why(task_budget: float | None, tenant_budget: float | None, spent: float = 0.0) -> str | None:
    return budget.why_refused(budget.terms(task(task_budget), tenant_budget, spent, EXPECTED))


def test_the_terms_name_the_cheapest_live_agent() -> None:
    terms = budget.terms(task(0.5), 1.0, 0.25, EXPECTED)
    assert terms == Refusal(
        tenant="acme",
        tenant_budget=1.0,
        tenant_spent=0.25,
        task_budget=0.5,
        cheapest_agent="small",
        cheapest_cost=0.01,
    )
    assert budget.terms(task(), None, 0.0, {}).cheapest_agent is None


def test_a_task_within_every_limit_is_auctioned() -> None:
    assert why(None, None) is None
    assert why(0.01, None) is None  # exactly the cheapest agent's expected cost
    assert why(None, 1.0, spent=0.99) is None  # what is left covers the cheapest agent
    assert why(0.5, 1.0, spent=0.5) is None


def test_a_task_budget_below_the_cheapest_agent_is_refused() -> None:
    assert why(0.001, None) == (
        "the task's budget 0.001 cannot cover even the cheapest live agent: small is expected "
        "to cost 0.01"
    )


def test_a_tenant_with_too_little_left_is_refused() -> None:
    assert why(None, 1.0, spent=1.0) == "tenant acme has spent 1 of its budget 1: nothing is left"
    assert why(0.5, 1.0, spent=0.75) == (
        "tenant acme has spent 0.75 of its budget 1; 0.25 is left, and the task's budget is 0.5"
    )
    assert why(None, 1.0, spent=0.995) == (
        "tenant acme has spent 0.995 of its budget 1; 0.005 is left, and the cheapest live "
        "agent, small, is expected to cost 0.01"
    )


def test_nobody_live_refuses_nothing_but_an_exhausted_tenant() -> None:
    nobody = budget.terms(task(0.0), 1.0, 0.5, {})
    assert budget.why_refused(nobody) is None  # the auction closes with no bids instead
    broke = budget.terms(task(), 1.0, 2.0, {})
    assert budget.why_refused(broke).endswith("nothing is left")


def refused() -> list:
    posted = task(0.001)
    closed = budget.refusal(posted, budget.terms(posted, None, 0.0, EXPECTED), "lean")
    return [posted, closed]


def test_a_refusal_is_a_close_that_replays_and_tampering_is_named() -> None:
    posted, closed = refused()
    assert (closed.reason, closed.refused, closed.lean, closed.mechanism) == (
        "over_budget",
        True,
        None,
        "lean",
    )
    assert replay.verify([posted, closed]) == []
    cheaper = closed.refusal.model_copy(update={"cheapest_cost": 0.0005})
    found = replay.verify([posted, closed.model_copy(update={"refusal": cheaper})])
    assert {d.field for d in found} == {"reason", "detail"}
    richer = posted.model_copy(update={"budget": 5.0})
    [found] = replay.verify([richer, closed])
    assert (found.field, found.recorded, found.recomputed) == ("refusal.task_budget", 0.001, 5.0)


def test_the_close_holds_refusal_terms_exactly_when_refused() -> None:
    _, closed = refused()
    with pytest.raises(ValueError, match="`refusal` holds the terms of an over_budget close"):
        closed.model_validate({**closed.model_dump(), "refusal": None})
    with pytest.raises(ValueError, match="`refusal` holds the terms"):
        closed.model_validate({**closed.model_dump(), "reason": "no_bids", "mechanism": "paper"})


def test_a_refusal_is_told_in_the_line_the_audit_and_the_outcome() -> None:
    posted, closed = refused()
    assert gist(closed).startswith("refused (over_budget): the task's budget 0.001 cannot")
    stored = [
        StoredEvent(i, "t", 0, i, None, event, LATER) for i, event in enumerate([posted, closed])
    ]
    story = audit.render(stored)
    assert "refused (over_budget): the task's budget 0.001 cannot cover" in story
    assert "  the cheapest live agent: small, expected to cost 0.01" in story
    assert "  tenant acme: budget none, spent 0" in story
    outcome = fold("a1", [posted, closed])
    assert (outcome.status, outcome.final, outcome.reason) == ("refused", True, "over_budget")
    assert outcome.detail == closed.detail


def test_tenant_budgets_are_read_and_a_bad_one_fails_naming_the_field() -> None:
    config = parse_config({"tenants": {"acme": {"budget": 2.5}, "free": {}}}, env={})
    assert (config.tenant_budget("acme"), config.tenant_budget("free")) == (2.5, None)
    assert config.tenant_budget("nobody") is None
    with pytest.raises(ConfigError, match=r"tenants\.acme\.budget: Input should be greater"):
        parse_config({"tenants": {"acme": {"budget": -1}}}, env={})
    with pytest.raises(ConfigError, match=r"tenants\.acme\.budgte: Extra inputs"):
        parse_config({"tenants": {"acme": {"budgte": 1}}}, env={})
