"""The front door's read-only hold on the Postgres log: one small pool, opened on first use.

The dashboard and `/metrics` read the log and its projections as the recorder keeps them; the
door never writes. What goes wrong on the way (no database configured, none answering, a log
the recorder has not created yet) is one `LogUnreadable` with a sentence for the operator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

POOL_MAX = 4
CONNECT_S = 5.0


class LogUnreadable(RuntimeError):
    """The log cannot be read now; the message says why."""


class LogReader:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            return await conn.fetchrow(query, *args)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        pool = await self._open()
        try:
            async with pool.acquire(timeout=CONNECT_S) as conn:
                yield conn
        except asyncpg.UndefinedTableError:
            raise LogUnreadable(
                "the database holds no event log yet: has `sale recorder` run?"
            ) from None
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError) as exc:
            raise LogUnreadable(f"the database does not answer: {exc}") from None

    async def _open(self) -> asyncpg.Pool:
        if not self.url:
            raise LogUnreadable("no database configured: set [database].url or DATABASE_URL")
        async with self._opening:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self.url, min_size=0, max_size=POOL_MAX, timeout=CONNECT_S
                    )
                except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                    raise LogUnreadable(f"the database does not answer: {exc}") from None
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
