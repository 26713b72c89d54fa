"""The completion cache on the real Postgres: the same call is answered once, a reused answer
keeps the compute it took, and two processes racing on one call end up with one answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agents.backends.scripted import ScriptedLLM
from agents.cache import CachedLLM, completion_key
from agents.llm import Completion, Message

CHAT = [{"role": "user", "content": "Write a plan."}]


class Gated:
    """A model that answers `text` (taking 2.5 s of compute) once `gate` opens."""

    def __init__(self, text: str, gate: asyncio.Event) -> None:
        self.model = "gated"
        self.text = text
        self.gate = gate

    async def complete(
        self, messages: Sequence[Message], *, max_tokens: int, top_logprobs: int = 5
    ) -> Completion:
        await self.gate.wait()
        return Completion(self.text, (), prompt_tokens=3, completion_tokens=1, seconds=2.5)


async def test_a_repeated_call_is_answered_from_the_cache_with_its_cost(
    fresh_database: str,
) -> None:
    model = ScriptedLLM(model="scripted")
    cached = CachedLLM(model, fresh_database)
    try:
        first = await cached.complete(CHAT, max_tokens=20)
        again = await cached.complete(CHAT, max_tokens=20)
        other = await cached.complete(CHAT, max_tokens=21)  # another limit: another call
    finally:
        await cached.close()
    assert again == first and len(model.calls) == 2
    assert (cached.hits, cached.misses) == (1, 2)
    assert other.text == first.text


async def test_racing_callers_all_get_the_first_stored_answer(fresh_database: str) -> None:
    gate = asyncio.Event()
    one, two = (
        CachedLLM(Gated("A", gate), fresh_database),
        CachedLLM(Gated("B", gate), fresh_database),
    )
    try:
        racing = [asyncio.create_task(c.complete(CHAT, max_tokens=5)) for c in (one, two)]
        await asyncio.sleep(0.5)  # both have missed the cache and are computing
        gate.set()
        answers = await asyncio.gather(*racing)
    finally:
        await one.close()
        await two.close()
    assert answers[0] == answers[1] and answers[0].seconds == 2.5


def test_the_key_covers_model_messages_and_limits() -> None:
    key = completion_key("m", CHAT, 5, 0)
    assert key == completion_key("m", [dict(CHAT[0])], 5, 0)
    assert len({key, completion_key("n", CHAT, 5, 0), completion_key("m", CHAT, 6, 0)}) == 3
    assert key != completion_key("m", CHAT, 5, 20)
