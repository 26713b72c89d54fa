"""Compute once: completions kept in Postgres and reused by any process that makes the same call.

Decoding is greedy, so the same model, messages and limits give the same answer; on two cores
every token is precious, and a benchmark asks the same questions many times (every method, every
task order, every interrupted run resumed). A reused completion carries the tokens and compute
seconds it took when it was made, so costs computed from it stay what the work really cost.

The key covers everything the answer depends on; the model name must change when the model
file does (the local tiers' names carry their quantisation; see `agents.install`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import asyncpg

from agents.llm import LLM, Completion, GeneratedToken, Message, TokenChoice
from marketplace.shared.migrate import apply_migrations

_GET = "SELECT completion FROM completions WHERE key = $1"
_PUT = """
INSERT INTO completions (key, model, completion) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (key) DO NOTHING
RETURNING key
"""


def completion_key(
    model: str, messages: Sequence[Message], max_tokens: int, top_logprobs: int
) -> str:
    call = [model, list(messages), max_tokens, top_logprobs]
    return hashlib.sha256(json.dumps(call, sort_keys=True).encode()).hexdigest()


def to_json(completion: Completion) -> str:
    """JSON that Postgres' jsonb accepts: it refuses the NUL character, which a byte-level token
    can decode to; such a token is kept as U+FFFD (its log-probabilities are unchanged)."""
    return json.dumps(asdict(completion)).replace("\\u0000", "\\ufffd")


def from_json(data: dict[str, Any]) -> Completion:
    tokens = tuple(
        GeneratedToken(
            token=t["token"],
            logprob=t["logprob"],
            top=tuple(TokenChoice(**c) for c in t["top"]),
            entropy=t["entropy"],
        )
        for t in data["tokens"]
    )
    return Completion(**{**data, "tokens": tokens})


class CachedLLM:
    """`llm`, answering from the `completions` table where the same call was made before."""

    def __init__(self, llm: LLM, database_url: str) -> None:
        self.llm = llm
        self.model = llm.model
        self.database_url = database_url
        self._pool: asyncpg.Pool | None = None
        self.hits = 0
        self.misses = 0

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            self._pool = pool
        return self._pool

    async def complete(
        self, messages: Sequence[Message], *, max_tokens: int, top_logprobs: int = 5
    ) -> Completion:
        key = completion_key(self.model, messages, max_tokens, top_logprobs)
        pool = await self._connection_pool()
        if (row := await pool.fetchval(_GET, key)) is not None:
            self.hits += 1
            return from_json(json.loads(row))
        completion = await self.llm.complete(
            messages, max_tokens=max_tokens, top_logprobs=top_logprobs
        )
        self.misses += 1
        if await pool.fetchval(_PUT, key, self.model, to_json(completion)) is None:
            # Another process made the same call at the same time and stored first: its answer
            # is the one everybody gets, so every reader of this call sees the same completion.
            return from_json(json.loads(await pool.fetchval(_GET, key)))
        return completion

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
