"""A scripted agent: the real agent (`agents.agent.LLMAgent`) on a scripted model, for tests and
load tests only. Deterministic and instant, so an auction among scripted agents has a known
answer and costs no LLM time — and what it proves is what the real agent does, as every event
goes through the real agent's one dispatcher.

The settings change only what the model, its sandbox and its search tool answer
(`agents.backends.scripted.Script`): plans of `plan_tokens` words at `entropy`, jury `scores` by
bidder, a refinement or not, code that passes the visible examples or not (`draft_passes`), a
search that finds `search_answer`; silence (`bids`, `judges` False, no `refined_plan_tokens`)
is the model failing, which the real agent answers with nothing. `delay_s` is thinking time
before each event is answered, and with `drafts` False calls for drafts go unanswered.
Never a stand-in where a user would run a real model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from agents.agent import LLMAgent
from agents.backends.scripted import ARTICLE, Script, ScriptedLLM
from marketplace.shared.config import AgentConfig
from schemas.events import BidRequested, Event, Mechanism

KINDS = ("coding", "search", "general")


@dataclass(frozen=True)
class Hit:
    title: str
    passage: str


class ScriptedTool:
    """A search tool over one article: every search finds it, and it opens."""

    def search(self, query: str, k: int = 5) -> list[Hit]:
        return [Hit(ARTICLE, "A scripted passage.")][:k]

    def open(self, title: str) -> str | None:
        return "A scripted article." if title == ARTICLE else None


class ScriptedAgent(LLMAgent):
    def __init__(
        self,
        agent_id: str,
        price: float,
        plan_tokens: int = 100,
        entropy: float = 1.0,
        kinds: tuple[str, ...] = KINDS,
        scores: Mapping[str, float] | None = None,
        default_score: float = 3.0,
        refined_plan_tokens: int | None = None,
        bids: bool = True,
        judges: bool = True,
        delay_s: float = 0.0,
        mechanism: Mechanism = "paper",
        drafts: bool = True,
        draft_passes: bool = True,
        search_answer: str | None = None,
    ) -> None:
        """`price` per million tokens, read and written alike."""
        self.script = Script(
            agent_id,
            plan_tokens,
            refined_plan_tokens,
            dict(scores or {}),
            default_score,
            bids,
            judges,
            draft_passes,
            search_answer,
        )
        config = AgentConfig(
            id=agent_id,
            backend="scripted",
            model=f"scripted-{agent_id}",
            input_price=price,
            output_price=price,
            kinds=list(kinds),
            max_plan_tokens=max(200, plan_tokens, refined_plan_tokens or 0),
        )
        model = ScriptedLLM(config.model, self.script, entropy)
        tool = ScriptedTool()
        super().__init__(config, model, mechanism, lambda corpus: tool, self.script.sandbox)
        self.delay_s = delay_s
        self.drafts = drafts

    @property
    def draft_passes(self) -> bool:
        return self.script.draft_passes

    @draft_passes.setter
    def draft_passes(self, passes: bool) -> None:
        """The same agent, its code now passing (or failing) the visible examples."""
        self.script.draft_passes = passes

    async def respond(self, event: Event) -> list[Event]:
        """The real agent's replies, after `delay_s`; with `drafts` False, a call for a draft
        goes unanswered, as by an agent still at work when every deadline passes."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self.drafts and isinstance(event, BidRequested) and event.agent_id == self.agent_id:
            return []
        return await super().respond(event)

    def answer(self, event: Event) -> list[Event]:
        """`respond` for a caller with no event loop to wait on (the in-memory
        `marketplace.testing.market.Market`): with no delay, a scripted agent's model, sandbox
        and tool never wait, so its replies are ready at the first step. (A search task's tool
        runs in a thread: answer it with `respond`.)"""
        if self.delay_s:
            raise RuntimeError(f"{self.agent_id} thinks for {self.delay_s} s: use respond")
        replies = self.respond(event)
        try:
            replies.send(None)
        except StopIteration as done:
            return done.value
        replies.close()
        raise RuntimeError(f"{self.agent_id} waited while answering {event.type}: use respond")
