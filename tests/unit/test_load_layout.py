"""The load test's agents: a price for any number of them (it once failed at 16), the agents the
lean auction calls told apart from those it never calls, and the processes that run them."""

from __future__ import annotations

import pytest

from marketplace.performance.agent_hosts import (
    AGENTS_PER_PROCESS,
    CHEAPEST,
    DEAREST,
    agents_for,
    called_by_lean,
    hosts,
    ladder,
)
from marketplace.performance.loadtest import time_left


@pytest.mark.parametrize("count", [1, 2, 3, 16, 64, 256, 1000])
def test_any_number_of_agents_gets_distinct_prices_from_the_cheapest_to_the_dearest(
    count: int,
) -> None:
    prices = ladder(count)
    assert len(prices) == count and prices[0] == CHEAPEST
    assert prices == sorted(set(prices))
    if count > 1:
        assert prices[-1] == pytest.approx(DEAREST)
    assert ladder(count) == prices  # deterministic


def test_sixteen_scripted_agents_are_made_for_either_mechanism() -> None:
    lean = agents_for(16, "lean")
    assert [a.agent_id for a in lean] == [f"agent{i}" for i in range(16)]
    assert {a.mechanism for a in lean} == {"lean"} and agents_for(16)[0].mechanism == "paper"


@pytest.mark.parametrize("count", [2, 4, 64, 256])
def test_the_lean_auction_calls_only_the_cheapest_agent_when_its_draft_passes(count: int) -> None:
    assert called_by_lean(count) == [0]


@pytest.mark.parametrize(
    ("count", "mechanism"), [(4, "lean"), (64, "lean"), (256, "lean"), (256, "paper")]
)
def test_every_agent_runs_once_in_a_process_of_its_role(count: int, mechanism: str) -> None:
    layout = hosts(count, mechanism)
    everyone = [i for host in layout for i in host.agents]
    assert sorted(everyone) == list(range(count))
    assert all(len(host.agents) <= AGENTS_PER_PROCESS for host in layout)
    called = {i for host in layout if host.role == "called" for i in host.agents}
    expected = set(range(count)) if mechanism == "paper" else set(called_by_lean(count))
    assert called == expected
    assert len({host.label for host in layout}) == len(layout)


def test_many_agents_share_a_few_processes() -> None:
    assert len(hosts(256, "lean")) == 5  # the called one, and 255 never called in four
    assert len(hosts(64, "lean")) == 2


def test_a_measurement_says_how_long_it_has_left_at_its_pace() -> None:
    assert time_left(300, 0, 16, 10.0, 30.0) == "none closed yet"
    assert time_left(300, 100, 116, 10.0, None) == "about 20 s left"  # 200 more at 0.1 s each
    assert time_left(300, 100, 116, 10.0, 30.0) == "about 20 s left"  # 20 s more of posting
    assert time_left(300, 100, 116, 40.0, 30.0) == "about 6 s left"  # the 16 still open
