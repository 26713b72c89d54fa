"""A subscriber for tests: collects what it receives and lets a test wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from marketplace.shared.bus import Source
from schemas.events import Event


class Inbox:
    """Collects what a subscriber receives, and waits for it."""

    def __init__(self) -> None:
        self.events: list[tuple[Event, Source]] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: Event, source: Source) -> None:
        async with self._changed:
            self.events.append((event, source))
            self._changed.notify_all()

    async def wait_for(self, count: int, timeout_s: float = 20.0) -> list[Event]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.events) >= count), timeout_s
            )
        return [event for event, _ in self.events]

    async def wait_until(
        self, done: Callable[[list[Event]], bool], timeout_s: float = 30.0
    ) -> list[Event]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: done([e for e, _ in self.events])), timeout_s
            )
        return [event for event, _ in self.events]

    def of(self, kind: type) -> list:
        return [e for e, _ in self.events if isinstance(e, kind)]
