"""Running an agent as a service: it hears tasks and auction calls, and publishes its answers.

Each agent id is its own consumer group (`agent.<id>`), so every agent sees every task and
replicas of one agent share the work. A new group starts from the end of the streams: an agent
joins the next auction, not the history. Heartbeats announce it at start and periodically, and
`left` on the way out, so the auctioneer stops waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from marketplace.shared.bus import Bus, Source
from schemas.events import AgentHeartbeat, Event


class Agent(Protocol):
    agent_id: str

    def heartbeat(self, status: str = "up") -> AgentHeartbeat: ...

    async def respond(self, event: Event) -> list[Event]: ...


class AgentService:
    def __init__(self, agent: Agent, bus: Bus, heartbeat_s: float = 5.0) -> None:
        """`heartbeat_s` must stay well under the auctioneer's `heartbeat_ttl_s`."""
        self.agent = agent
        self.bus = bus
        self.heartbeat_s = heartbeat_s
        bus.subscribe(
            ["tasks", "auctions"], f"agent.{agent.agent_id}", self._on_event, from_start=False
        )
        self._beating: asyncio.Task | None = None

    async def _on_event(self, event: Event, source: Source) -> None:
        for answer in await self.agent.respond(event):
            await self.bus.publish(answer)

    async def _beat(self) -> None:
        await self.bus.joined()  # announce ourselves only once we can hear the next task
        while True:
            await self.bus.publish(self.agent.heartbeat("up"))
            await asyncio.sleep(self.heartbeat_s)

    async def start(self) -> None:
        await self.bus.start()
        self._beating = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        """Draining, then gone: work in hand is finished if it ends within the bus's grace
        period, else handed back (its offset is not committed, so it is redelivered)."""
        if self._beating:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        await self._say("draining")
        await self.bus.stop_consuming()
        await self._say("left")
        await self.bus.stop()

    async def _say(self, status: str) -> None:
        try:
            async with asyncio.timeout(5):
                await self.bus.publish(self.agent.heartbeat(status))
        except TimeoutError:
            pass  # the broker is gone; our last heartbeat will simply expire

    async def __aenter__(self) -> AgentService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
