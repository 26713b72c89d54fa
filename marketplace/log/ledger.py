"""What each tenant has spent, summed from the log: the auctioneer's side of tenant budgets.

Spend is what the recorder's `spend` projection holds of the tenant's tasks (every priced LLM
call: bids, jury, refinement, execution), so it is the log's word, a moment behind the stream:
a task still running when another is judged has spent only what is recorded of it so far.
`NoLedger` knows of no spend (no database: budgets cannot be kept, and `sale auctioneer`
refuses to start with tenant budgets and no database).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

_SPENT = """
SELECT coalesce(sum(s.cost), 0)
FROM spend s JOIN auctions a ON a.task_id = s.task_id
WHERE a.tenant = $1
"""


class Ledger(Protocol):
    async def spent(self, tenant: str) -> float:
        """What the tenant's tasks have spent, as recorded."""
        ...


class NoLedger:
    async def spent(self, tenant: str) -> float:
        return 0.0


class PostgresLedger:
    """The tenant's spend from the recorder's Postgres (migrated at first use)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._pool: Any = None
        self._ready = asyncio.Lock()

    async def _connect(self) -> Any:
        async with self._ready:
            if self._pool is None:
                import asyncpg

                from marketplace.shared.migrate import apply_migrations

                pool = await asyncpg.create_pool(self.database_url, min_size=0, max_size=2)
                async with pool.acquire() as conn:
                    await apply_migrations(conn)
                self._pool = pool
        return self._pool

    async def spent(self, tenant: str) -> float:
        pool = await self._connect()
        async with pool.acquire() as conn:
            return float(await conn.fetchval(_SPENT, tenant))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
