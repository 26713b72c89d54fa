"""The auction memory as the auctioneer sees it: past (losing plan, winning plan) pairs for the
paper's refinement, and past drafts (`lean.Record`) for the lean auction's estimates.

A small interface, so the auctioneer does not care where the memory lives. `NoMemory` runs
refinement with no examples; `PostgresMemory` retrieves them from the recorder's projections.

Retrieval (step 5 of the paper's auction in docs/mechanism.md) is pure and lives in
`core.retrieval` (`rank`, `pair`, `select`, `past_drafts`), tested without a database;
`PostgresMemory` only fetches their inputs. Where pgvector exists, the server picks the
candidates and numpy re-scores them, so both paths return the same examples.

Drafts (lean): every draft bid of the agents in the log, one per (task, agent), with the
similarity of its task to the new one by the same embeddings and `rank`; whether the draft was
right is known only where it won and the verifier decided its result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from marketplace.core import lean_policy
from marketplace.core.retrieval import PastBid, PastTask, past_drafts, rank, select
from marketplace.shared.embeddings import Embedder
from schemas.events import MemoryExample, TaskPosted

log = logging.getLogger(__name__)
T = TypeVar("T")


def lost_connection(exc: BaseException) -> bool:
    """Whether `exc` says the database went away (a restart, a cut connection, an operator's
    `pg_terminate_backend`), as opposed to a fault in the query or the code."""
    import asyncpg

    gone = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)
    return isinstance(exc, gone) or getattr(exc, "sqlstate", "").startswith(("08", "57P"))


class Memory(Protocol):
    async def examples(self, task: TaskPosted, agent_id: str, k: int) -> list[MemoryExample]:
        """Up to k examples from the tasks most similar to `task`, for `agent_id` to learn from."""
        ...

    async def records(self, task: TaskPosted, agent_ids: Sequence[str]) -> list[lean_policy.Record]:
        """The past drafts of `agent_ids` on other tasks, with their tasks' similarity to `task`."""
        ...


class NoMemory:
    async def examples(self, task: TaskPosted, agent_id: str, k: int) -> list[MemoryExample]:
        return []

    async def records(self, task: TaskPosted, agent_ids: Sequence[str]) -> list[lean_policy.Record]:
        return []


_MISSING = """
SELECT a.task_id, a.prompt FROM auctions a
LEFT JOIN task_embeddings e ON e.task_id = a.task_id
WHERE a.closed_at IS NOT NULL AND a.winner_agent_id IS NOT NULL AND a.prompt IS NOT NULL
  AND e.task_id IS NULL
ORDER BY a.task_id
"""
_STORE = """
INSERT INTO task_embeddings (task_id, prompt, embedding) VALUES ($1, $2, $3::float8[])
ON CONFLICT (task_id) DO NOTHING
"""
# A bid row that holds a draft (lean) rather than a plan: the log says which.
_NOT_A_DRAFT = """NOT EXISTS (SELECT 1 FROM events d WHERE d.event_id = {bids}.event_id
                    AND d.payload->>'examples_pass' IS NOT NULL)"""
# Past tasks the agent bid a plan on (a plan of its own is needed in every pair).
_CANDIDATES = f"""
SELECT e.task_id, e.embedding FROM task_embeddings e
WHERE e.task_id <> $1
  AND EXISTS (SELECT 1 FROM bids b
              WHERE b.task_id = e.task_id AND b.agent_id = $2 AND b.plan IS NOT NULL
                AND {_NOT_A_DRAFT.format(bids="b")})
"""
_CANDIDATES_PGVECTOR = (
    _CANDIDATES
    + """
ORDER BY e.embedding::vector <=> $3::float8[]::vector, e.task_id
LIMIT $4
"""
)
_TASKS = """
SELECT a.task_id, a.prompt, a.winner_agent_id, a.winning_plan, o.passed
FROM auctions a LEFT JOIN outcomes o ON o.task_id = a.task_id
WHERE a.task_id = ANY($1::text[])
"""
_BIDS = f"""
SELECT task_id, agent_id, plan, score, round FROM bids
WHERE task_id = ANY($1::text[]) AND plan IS NOT NULL AND {_NOT_A_DRAFT.format(bids="bids")}
"""
# Draft bids of the agents on past tasks of the same kind (a general task's answer says nothing
# of a program's chances, nor the other way round), the first recorded per (task, agent);
# `right` where it won and the verifier decided its result.
_DRAFTS = """
SELECT DISTINCT ON (e.task_id, e.agent_id)
       e.task_id, e.agent_id, (e.payload->>'examples_pass')::boolean AS examples_pass,
       coalesce((e.payload->'usage'->>'cost')::float8, 0) AS cost,
       CASE WHEN a.winner_bid_id = (e.payload->>'bid_id')::uuid THEN o.passed END AS right_
FROM events e
LEFT JOIN auctions a ON a.task_id = e.task_id
LEFT JOIN outcomes o ON o.task_id = e.task_id
WHERE e.type = 'BidSubmitted' AND e.payload->>'examples_pass' IS NOT NULL
  AND e.task_id <> $1 AND e.agent_id = ANY($2::text[])
  AND coalesce(a.kind, 'coding') = $3
ORDER BY e.task_id, e.agent_id, e.id
"""
_EMBEDDINGS = "SELECT task_id, embedding FROM task_embeddings WHERE task_id = ANY($1::text[])"


class PostgresMemory:
    """The memory in the recorder's Postgres: `auctions`, `bids`, `outcomes`, `task_embeddings`.

    Embeddings of closed auctions are computed on demand (all the missing ones in one batch) and
    stored, so the memory grows with the stream without a service of its own. `use_pgvector`:
    None decides by whether the extension is available (and can be created); False forces numpy.
    """

    def __init__(
        self,
        database_url: str,
        embedder: Embedder | None = None,
        *,
        use_pgvector: bool | None = None,
    ) -> None:
        if embedder is None:
            from marketplace.shared.embeddings import embed

            embedder = embed
        self.database_url = database_url
        self.embedder = embedder
        self.use_pgvector = use_pgvector
        self._pool: Any = None
        self._ready = asyncio.Lock()
        self._query: tuple[str, str, np.ndarray] | None = None  # (task_id, prompt, vector)

    async def _connect(self) -> Any:
        async with self._ready:
            if self._pool is None:
                import asyncpg

                from marketplace.shared.migrate import apply_migrations

                pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)
                async with pool.acquire() as conn:
                    await apply_migrations(conn)
                    if self.use_pgvector is not False:
                        found = await _pgvector(conn)
                        if self.use_pgvector and not found:
                            await pool.close()
                            raise RuntimeError("use_pgvector=True, but pgvector is not available")
                        self.use_pgvector = found
                log.info("memory: similarity in %s", "pgvector" if self.use_pgvector else "numpy")
                self._pool = pool
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _again_if_lost(self, what: str, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, and once more on a fresh pool if the database connection was lost: a
        one-line warning, not a traceback (what fails twice is raised)."""
        try:
            return await read()
        except Exception as exc:
            if not lost_connection(exc):
                raise
            log.warning("memory: %s: lost the database (%s); connecting again", what, _brief(exc))
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.terminate()
            return await read()

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embedder, list(texts))

    async def _vector(self, task: TaskPosted) -> np.ndarray:
        """The new task's embedding; remembered, as every refining agent asks for the same."""
        if self._query is None or self._query[:2] != (task.task_id, task.prompt):
            self._query = (task.task_id, task.prompt, (await self._embed([task.prompt]))[0])
        return self._query[2]

    async def remember(self) -> int:
        """Stores the embeddings of closed auctions that lack one; returns how many."""
        pool = await self._connect()
        async with pool.acquire() as conn:
            missing = await conn.fetch(_MISSING)
            if not missing:
                return 0
            vectors = await self._embed([r["prompt"] for r in missing])
            rows = [
                (r["task_id"], r["prompt"], [float(x) for x in v])
                for r, v in zip(missing, vectors, strict=True)
            ]
            await conn.executemany(_STORE, rows)
        return len(rows)

    async def examples(self, task: TaskPosted, agent_id: str, k: int) -> list[MemoryExample]:
        """As `retrieve`; a failing memory costs the refinement its examples, not the auction."""
        try:
            return await self._again_if_lost(task.task_id, lambda: self.retrieve(task, agent_id, k))
        except Exception as exc:
            if not lost_connection(exc):
                log.exception("memory: retrieval failed for %s; no examples", task.task_id)
            else:
                log.warning("memory: %s: no database (%s); no examples", task.task_id, _brief(exc))
            return []

    async def retrieve(self, task: TaskPosted, agent_id: str, k: int) -> list[MemoryExample]:
        if k <= 0:
            return []
        pool = await self._connect()
        await self.remember()
        query = await self._vector(task)
        async with pool.acquire() as conn:
            limit = max(4 * k, 32)
            while True:
                ranked = await self._ranked(conn, task.task_id, agent_id, query, limit)
                tasks = await _past_tasks(conn, [task_id for task_id, _ in ranked])
                examples = select(ranked, tasks, agent_id, k)
                if len(examples) >= k or not self.use_pgvector or len(ranked) < limit:
                    return examples
                limit *= 4  # too many candidates gave no pair: look further down the ranking

    async def records(self, task: TaskPosted, agent_ids: Sequence[str]) -> list[lean_policy.Record]:
        """As `drafts`; a failing memory leaves the estimates at their priors, not the auction
        without a call."""
        try:
            return await self._again_if_lost(task.task_id, lambda: self.drafts(task, agent_ids))
        except Exception as exc:
            if not lost_connection(exc):
                log.exception("memory: drafts unavailable for %s; priors only", task.task_id)
            else:
                log.warning("memory: %s: no database (%s); priors only", task.task_id, _brief(exc))
            return []

    async def drafts(self, task: TaskPosted, agent_ids: Sequence[str]) -> list[lean_policy.Record]:
        if not agent_ids:
            return []
        pool = await self._connect()
        await self.remember()
        query = await self._vector(task)
        async with pool.acquire() as conn:
            rows = await conn.fetch(_DRAFTS, task.task_id, list(agent_ids), task.kind)
            tasks = sorted({r["task_id"] for r in rows})
            vectors = await conn.fetch(_EMBEDDINGS, tasks) if tasks else []
        candidates = [(r["task_id"], np.asarray(r["embedding"], dtype=np.float64)) for r in vectors]
        similar = dict(rank(query, candidates, exclude=task.task_id))
        return past_drafts(rows, similar)

    async def _ranked(
        self, conn: Any, task_id: str, agent_id: str, query: np.ndarray, limit: int
    ) -> list[tuple[str, float]]:
        if self.use_pgvector:
            vector = [float(x) for x in query]
            rows = await conn.fetch(_CANDIDATES_PGVECTOR, task_id, agent_id, vector, limit)
        else:
            rows = await conn.fetch(_CANDIDATES, task_id, agent_id)
        candidates = [(r["task_id"], np.asarray(r["embedding"], dtype=np.float64)) for r in rows]
        return rank(query, candidates, exclude=task_id)


async def _pgvector(conn: Any) -> bool:
    """Whether `vector` is usable here, creating the extension if it is available."""
    if not await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
        return False
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except Exception as exc:  # no privilege to create it: numpy gives the same answers
        log.warning("memory: pgvector is available but cannot be created (%s); using numpy", exc)
        return False
    return True


async def _past_tasks(conn: Any, task_ids: list[str]) -> dict[str, PastTask]:
    if not task_ids:
        return {}
    bids: dict[str, list[PastBid]] = {}
    for r in await conn.fetch(_BIDS, task_ids):
        bids.setdefault(r["task_id"], []).append(
            PastBid(agent_id=r["agent_id"], plan=r["plan"], score=r["score"], round=r["round"])
        )
    return {
        r["task_id"]: PastTask(
            task_id=r["task_id"],
            prompt=r["prompt"] or "",
            winner_agent_id=r["winner_agent_id"],
            winning_plan=r["winning_plan"] or "",
            passed=r["passed"],
            bids=tuple(bids.get(r["task_id"], ())),
        )
        for r in await conn.fetch(_TASKS, task_ids)
    }


def _brief(exc: BaseException) -> str:
    """An error in one line: its type and the first line of its message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
