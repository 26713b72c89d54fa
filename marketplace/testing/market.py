"""One auction and its agents in memory, played by the real state machine: for tests and for
the benchmarks that need auctions as the marketplace logs them.

The `Market` does what the auctioneer does around `Auction` or `LeanAuction` — deliver every
event to the machine, settle it at a hand-driven clock, let each agent answer each decision —
without a broker, a database or a wall clock. The lean mechanism's estimates come from the
priors alone (an empty memory). Agents are anything that answers events (the scripted agent).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from marketplace.core import lean_policy
from marketplace.core.auction_state import Roster, Windows
from marketplace.core.lean_auction import LeanAuction, prior_for
from marketplace.core.paper_auction import PaperAuction
from schemas.events import AgentHeartbeat, AuctionOpened, Event, TaskPosted, Weights

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WINDOWS = Windows(
    bid=timedelta(seconds=10), jury=timedelta(seconds=10), refine=timedelta(seconds=10)
)
WEIGHTS = Weights(cost=0.05, entropy=0.0, jury=1.0)


class Answering(Protocol):
    agent_id: str

    def heartbeat(self) -> AgentHeartbeat: ...

    def answer(self, event: Event) -> list[Event]: ...


class Market:
    """Delivers events between one auction and some agents, all in memory.

    `mechanism` picks the machine: "paper" scores bids with `weights`; "lean" calls agents by
    the estimates from `priors` and `settings`, and dearer agents fix cheaper agents' failing
    drafts when `fixes`.
    """

    def __init__(
        self,
        *agents: Answering,
        mechanism: Literal["paper", "lean"] = "paper",
        weights: Weights = WEIGHTS,
        priors: Mapping[str, object] | None = None,
        settings: lean_policy.Settings | None = None,
        fixes: bool = True,
        ttl_s: float = 60,
        start: datetime = T0,
    ) -> None:
        self.agents = {a.agent_id: a for a in agents}
        self.mechanism = mechanism
        self.weights = weights
        self.priors = priors or {}
        self.settings = settings or lean_policy.Settings(value=1.0)
        self.fixes = fixes
        self.roster = Roster(ttl=timedelta(seconds=ttl_s))
        for agent in agents:
            self.roster.apply(agent.heartbeat().model_copy(update={"occurred_at": start}))
        self.log: list[Event] = []
        self.auction: PaperAuction | LeanAuction | None = None
        self.now = start

    def post(self, posted: TaskPosted) -> None:
        machine = LeanAuction if self.mechanism == "lean" else PaperAuction
        self.auction = machine(posted.task_id)
        self.deliver(posted)

    def deliver(self, event: Event) -> None:
        self.log.append(event)
        self.auction.apply(event)

    def step(self, seconds: float = 0.0, answer: bool = True) -> list[Event]:
        """Advances the clock, settles, and lets agents answer each decision (and the task)."""
        self.now += timedelta(seconds=seconds)
        decided: list[Event] = []
        while decisions := self._settle():
            for decision in decisions:
                self.deliver(decision)
                decided.append(decision)
                if answer:
                    self.answer(decision)
        return decided

    def answer(self, event: Event) -> None:
        """Each agent's replies to `event`; an opened auction is answered as its task is."""
        trigger = self.auction.task if isinstance(event, AuctionOpened) else event
        for agent in self.agents.values():
            for reply in agent.answer(trigger):
                self.deliver(reply)

    def of(self, kind: type) -> list:
        return [e for e in self.log if isinstance(e, kind)]

    def estimates(self) -> list[lean_policy.Estimate] | None:
        agents = self.auction.candidates(self.roster, self.now)
        if agents is None:
            return None
        return [
            lean_policy.estimate(
                a,
                prior_for(self.priors, a, self.roster.beats[a].price, self.auction.task.kind),
                [],
                self.settings,
            )
            for a in agents
        ]

    def _settle(self) -> list[Event]:
        if isinstance(self.auction, LeanAuction):
            value = self.settings.value
            return self.auction.settle(
                self.roster,
                WINDOWS,
                value,
                self.now,
                self.estimates(),
                self.fixes,
                self.settings.uncheckable,
            )
        return self.auction.settle(self.roster, WINDOWS, self.weights, self.now)
