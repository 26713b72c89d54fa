"""A scripted agent: deterministic, no model, for tests and load tests only.

Its plans, jury scores, drafts and outputs are fixed by its settings, so an auction among
scripted agents has a known answer and costs no LLM time. Under the lean mechanism it bids no
plan on a task; called for a draft, it answers one that passes the visible examples or not
(`draft_passes`), naming in its source the failing draft it was shown, if any; a general
task's draft (and result) is a line of text, its answer. Never a
stand-in where a user would run a real model: the real agents (`agents.agent`) use LLM backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.events import (
    AgentHeartbeat,
    AuctionClosed,
    BidRequested,
    BidScore,
    BidSubmitted,
    Event,
    JuryCalled,
    Mechanism,
    RefinementCalled,
    ReviewSubmitted,
    TaskPosted,
    TaskResult,
    Usage,
)

KNOWN_TASKS = 1000  # general task ids remembered


@dataclass
class ScriptedAgent:
    agent_id: str
    price: float
    plan_tokens: int = 100
    entropy: float = 1.0
    kinds: tuple[str, ...] = ("coding", "search", "general")
    # The score it gives a bid: by "bidder:round", else by bidder, else the default.
    scores: Mapping[str, float] = field(default_factory=dict)
    default_score: float = 3.0
    refined_plan_tokens: int | None = None  # None: declines to refine
    bids: bool = True  # False: a silent agent that never bids (but still judges)
    judges: bool = True
    delay_s: float = 0.0  # simulated thinking time before each answer
    mechanism: Mechanism = "paper"  # lean: bids no plan on a task, only drafts when called
    drafts: bool = True  # False: silent when called for a draft
    draft_passes: bool = True  # whether its draft passes the visible examples
    draft_tokens: int = 80
    task_kinds: dict[str, str] = field(default_factory=dict)  # task id → kind, of tasks seen

    @property
    def model(self) -> str:
        return f"scripted-{self.agent_id}"

    def heartbeat(self, status: str = "up") -> AgentHeartbeat:
        return AgentHeartbeat(
            producer=self.agent_id,
            agent_id=self.agent_id,
            model=self.model,
            price=self.price,
            kinds=list(self.kinds),
            status=status,
        )

    async def respond(self, event: Event) -> list[Event]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.answer(event)

    def recall(self, event: Event) -> None:
        """What a restart would lose: only which tasks are general (the rest of every answer
        follows from the event alone)."""
        self._note(event)

    def _note(self, event: Event) -> None:
        if isinstance(event, TaskPosted) and event.kind == "general":
            self.task_kinds[event.task_id] = event.kind
            while len(self.task_kinds) > KNOWN_TASKS:
                self.task_kinds.pop(next(iter(self.task_kinds)))

    def _general(self, task_id: str) -> bool:
        return self.task_kinds.get(task_id) == "general"

    def answer(self, event: Event) -> list[Event]:
        """What this agent publishes in reply to `event` (often nothing)."""
        self._note(event)
        match event:
            case TaskPosted() if self.bids and event.kind in self.kinds:
                if self.mechanism == "lean":
                    return []
                return [self._bid(event.task_id, 0, self.plan_tokens, [])]
            case BidRequested() if self.drafts and event.agent_id == self.agent_id:
                return [self._draft(event)]
            case AuctionClosed(mechanism="lean") if event.winner_agent_id == self.agent_id:
                return [self._delivery(event)]
            case JuryCalled() if self.judges and self.agent_id in event.jurors:
                return [self._review(event)]
            case RefinementCalled() if self.refined_plan_tokens is not None and any(
                i.agent_id == self.agent_id for i in event.invites
            ):
                invite = next(i for i in event.invites if i.agent_id == self.agent_id)
                refs = [example.task_id for example in invite.examples]
                return [self._bid(event.task_id, 1, self.refined_plan_tokens, refs)]
            case AuctionClosed() if event.winner_agent_id == self.agent_id:
                return [self._result(event)]
        return []

    def _bid(self, task_id: str, round_: int, tokens: int, refs: list[str]) -> BidSubmitted:
        return BidSubmitted(
            producer=self.agent_id,
            task_id=task_id,
            agent_id=self.agent_id,
            model=self.model,
            round=round_,
            plan=f"scripted plan of {self.agent_id}, round {round_}, {tokens} tokens",
            plan_tokens=tokens,
            entropy=self.entropy,
            price=self.price,
            usage=self._usage(prompt=50, completion=tokens),
            memory_refs=refs,
        )

    @property
    def failure(self) -> str | None:
        return None if self.draft_passes else f"AssertionError: {self.agent_id}'s scripted draft"

    def _draft(self, call: BidRequested) -> BidSubmitted:
        fixing = f", fixing {call.feedback.agent_id}'s" if call.feedback else ""
        draft = f"# scripted draft of {self.agent_id}{fixing}\ndef f():\n    return None\n"
        if self._general(call.task_id):
            draft = f"scripted answer of {self.agent_id}{fixing}"
        return BidSubmitted(
            producer=self.agent_id,
            task_id=call.task_id,
            agent_id=self.agent_id,
            model=self.model,
            plan=draft,
            plan_tokens=self.draft_tokens,
            entropy=0.0,
            price=self.price,
            usage=self._usage(prompt=100, completion=self.draft_tokens),
            examples_pass=self.draft_passes,
            failure=self.failure,
        )

    def _delivery(self, closed: AuctionClosed) -> TaskResult:
        """The winning draft, delivered as it is: no second piece of work, nothing more spent."""
        return TaskResult(
            producer=self.agent_id,
            task_id=closed.task_id,
            agent_id=self.agent_id,
            bid_id=closed.winner_bid_id,
            output=closed.winning_plan,
            error=self.failure,
        )

    def _review(self, jury: JuryCalled) -> ReviewSubmitted:
        return ReviewSubmitted(
            producer=self.agent_id,
            task_id=jury.task_id,
            juror=self.agent_id,
            round=jury.round,
            scores=[BidScore(bid_id=b.bid_id, score=self._score(b)) for b in jury.bids],
            usage=self._usage(prompt=50 * len(jury.bids), completion=len(jury.bids)),
        )

    def _score(self, bid: BidSubmitted) -> float:
        for key in (f"{bid.agent_id}:{bid.round}", bid.agent_id):
            if key in self.scores:
                return self.scores[key]
        return self.default_score

    def _result(self, closed: AuctionClosed) -> TaskResult:
        usage = self._usage(prompt=100, completion=100)
        return TaskResult(
            producer=self.agent_id,
            task_id=closed.task_id,
            agent_id=self.agent_id,
            bid_id=closed.winner_bid_id,
            output=f"scripted {'answer' if self._general(closed.task_id) else 'output'} "
            f"of {self.agent_id}",
            usage=usage,
            cost=usage.cost,
        )

    def _usage(self, prompt: int, completion: int) -> Usage:
        return Usage(
            requests=1,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=self.price * (prompt + completion) / 1_000_000,
        )
