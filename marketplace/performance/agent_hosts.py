"""The load test's scripted agents: their prices, which of them an auction will call, and the
few processes that run them, many agents to a process.

Prices climb a geometric ladder from `CHEAPEST` to `DEAREST`, so any number of agents has
distinct, deterministic prices (agent0 the cheapest). The agents are grouped into processes by
role, so that psutil's per-process CPU is the CPU of a role: the agents the auction calls in
one process, those it never calls in others. Which agents the lean auction calls is asked of the
lean policy itself (`called_by_lean`), with the priors the auctioneer gives agents it has no
fitted prior for and drafts that pass their examples, as a scripted agent's do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agents.runtime import AgentService
from agents.scripted_agent import ScriptedAgent
from marketplace.core import lean_policy
from marketplace.core.lean_auction import prior_for
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig, LeanConfig
from schemas.events import Mechanism

CHEAPEST = 0.05  # per million tokens
DEAREST = 1.2
AGENTS_PER_PROCESS = 64  # at most, for the agents of one role
STARTING_AT_ONCE = 16  # agents of a process joining the broker at the same time


def ladder(count: int) -> list[float]:
    """`count` prices, cheapest first, in a geometric progression from CHEAPEST to DEAREST."""
    if count == 1:
        return [CHEAPEST]
    step = (DEAREST / CHEAPEST) ** (1 / (count - 1))
    return [round(CHEAPEST * step**i, 6) for i in range(count)]


def name(i: int) -> str:
    return f"agent{i}"


def agents_for(count: int, mechanism: Mechanism = "paper") -> list[ScriptedAgent]:
    """The paper auction: the dearest agent wins round 0; the cheapest refines and wins round 1,
    so every phase runs. The lean auction: every draft passes its examples."""
    names = [name(i) for i in range(count)]
    scores = {names[-1]: 5.0, f"{names[0]}:1": 5.0}
    return [
        ScriptedAgent(
            agent_id,
            price=price,
            scores=scores,
            default_score=1.0,
            refined_plan_tokens=50,
            mechanism=mechanism,
        )
        for agent_id, price in zip(names, ladder(count), strict=True)
    ]


def called_by_lean(count: int) -> list[int]:
    """The agents (by index) the lean auction calls for a task, when every draft passes its
    examples: its own policy, run on the priors of agents it knows nothing of."""
    prices = {name(i): price for i, price in enumerate(ladder(count))}
    settings = lean_policy.settings_of(LeanConfig())
    estimates = [
        lean_policy.estimate(agent_id, prior_for({}, agent_id, price), [], settings)
        for agent_id, price in prices.items()
    ]
    drafts: list[lean_policy.Draft] = []
    while (step := lean_policy.next_step(estimates, prices, drafts, settings.value)).ask:
        drafts.append(lean_policy.Draft(step.ask, examples_pass=True))
    return sorted(int(d.agent_id.removeprefix("agent")) for d in drafts)


@dataclass(frozen=True)
class Host:
    """One process of agents: its role ("called" or "never called") and its agents' indices."""

    role: str
    agents: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.role.replace(' ', '-')}-{self.agents[0]}"


def hosts(count: int, mechanism: Mechanism) -> list[Host]:
    """The processes of `count` agents: the paper auction calls every agent; the lean one the
    few `called_by_lean`, in a process of their own, apart from those it never calls."""
    called = list(range(count)) if mechanism == "paper" else called_by_lean(count)
    never = [i for i in range(count) if i not in called]
    return [Host("called", chunk) for chunk in chunks(called)] + [
        Host("never called", chunk) for chunk in chunks(never)
    ]


def chunks(indices: list[int]) -> Iterator[tuple[int, ...]]:
    """`indices` in as few processes as `AGENTS_PER_PROCESS` allows, of near equal size."""
    if not indices:
        return
    processes = -(-len(indices) // AGENTS_PER_PROCESS)
    size = -(-len(indices) // processes)
    for start in range(0, len(indices), size):
        yield tuple(indices[start : start + size])


async def serve(
    broker: BrokerConfig,
    indices: list[int],
    count: int,
    mechanism: Mechanism,
    ready: Path,
    stop: asyncio.Event,
) -> None:
    """Runs agents `indices` of `count` in this process until `stop`; `ready` is written once
    every one has joined the broker (the load test waits for it)."""
    everyone = agents_for(count, mechanism)
    services = [
        AgentService(everyone[i], Bus(broker, producer=everyone[i].agent_id)) for i in indices
    ]
    started: list[AgentService] = []
    try:
        for first in range(0, len(services), STARTING_AT_ONCE):
            batch = services[first : first + STARTING_AT_ONCE]
            results = await asyncio.gather(*(s.start() for s in batch), return_exceptions=True)
            started += [s for s, r in zip(batch, results, strict=True) if r is None]
            if failed := [r for r in results if isinstance(r, BaseException)]:
                raise failed[0]
        await asyncio.gather(*(s.bus.joined(timeout_s=120) for s in started))
        ready.write_text(f"{len(started)} agents\n")
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.gather(*(s.stop() for s in started), return_exceptions=True)
