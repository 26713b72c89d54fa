"""The auction memory as the auctioneer sees it: past (losing plan, winning plan) pairs.

A small interface, so the auctioneer does not care where the memory lives. The Postgres-backed
retrieval arrives with issue #5; until then `NoMemory` runs refinement with no examples.
"""

from __future__ import annotations

from typing import Protocol

from schemas.events import MemoryExample, TaskPosted


class Memory(Protocol):
    async def examples(self, task: TaskPosted, agent_id: str, k: int) -> list[MemoryExample]:
        """Up to k examples from the tasks most similar to `task`, for `agent_id` to learn from."""
        ...


class NoMemory:
    async def examples(self, task: TaskPosted, agent_id: str, k: int) -> list[MemoryExample]:
        return []
