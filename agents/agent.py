"""An agent on a real LLM: it bids a plan, judges plans, refines its bid, executes what it won
(the paper's auction); or, in the lean auction, drafts when called and delivers its draft.
A search task is done with a search tool, in a bounded loop (`agents.searching`).

Pure decisions about what to answer live here; the model work goes through the `LLM` protocol
and the sandbox, and `agents.runtime.AgentService` moves the events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from agents import coding, prompts, searching
from agents.handled import Handled, aware, utc_now
from agents.llm import LLM, LLMError, read_score
from marketplace.shared.config import AgentConfig
from marketplace.shared.sandbox import run_python_async
from schemas.events import (
    MAX_PLAN,
    MAX_REASON,
    AgentHeartbeat,
    AuctionClosed,
    BidRequested,
    BidScore,
    BidSubmitted,
    Event,
    FailedDraft,
    JuryCalled,
    Mechanism,
    RefinementCalled,
    ReviewSubmitted,
    TaskPosted,
    TaskResult,
    ToolStep,
    Usage,
)

log = logging.getLogger("agent")
JURY_TOP_K = 20  # alternatives read at the answer position: the digits must be among them
KNOWN_TASKS = 1000  # tasks remembered for the jury, refinement and execution calls that follow


class LLMAgent:
    def __init__(
        self,
        config: AgentConfig,
        llm: LLM,
        mechanism: Mechanism = "paper",
        tools: searching.Tools | None = None,
        sandbox: coding.Sandbox = run_python_async,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`mechanism` is the marketplace's `[auction] mechanism`: under "lean" a task is only
        remembered, as the auction calls for drafts (`BidRequested`) instead of plans. `tools`
        gives the search tool of a corpus (default: `searching.Corpora`, loaded on first use);
        `sandbox` runs a program on a coding task's visible examples. `clock` dates the age
        of a call (`stale`)."""
        self.config = config
        self.llm = llm
        self.tools = tools or searching.Corpora()
        self.sandbox = sandbox
        self.steps: dict[str, list[ToolStep]] = {}  # task id → its search draft's tool steps
        self.agent_id = config.id
        self.mechanism = mechanism
        self.tasks: OrderedDict[str, TaskPosted] = OrderedDict()
        self.plans: dict[str, str] = {}  # task id → this agent's latest plan
        self.failures: dict[str, str | None] = {}  # task id → why its draft fails, or None
        self.asked: dict[str, BidRequested] = {}  # calls for tasks not yet seen
        self.clock = clock
        self.handled = Handled(timedelta(seconds=config.replay_window_s))

    def heartbeat(self, status: str = "up") -> AgentHeartbeat:
        return AgentHeartbeat(
            producer=self.agent_id,
            agent_id=self.agent_id,
            model=self.llm.model,
            price=self.config.output_price,
            input_price=self.config.input_price,
            kinds=list(self.config.kinds),
            status=status,
        )

    async def respond(self, event: Event) -> list[Event]:
        """The answer to `event`, if it asks anything of this agent. A model failure means no
        answer (the auction treats it like silence) and a line in the log.

        An event answered before (`answered`: a replay, or a redelivery after a crash) or a
        call older than the window (`stale`) is answered with nothing, with no model call:
        only what it teaches is taken in (`recall`), as from a record read before a restart."""
        why = "answered already" if event.event_id in self.handled else self.stale(event)
        if why is not None:
            if self.addressed(event):
                log.warning(
                    "%s: %s %s for %s refused: %s",
                    self.agent_id,
                    event.type,
                    event.event_id,
                    getattr(event, "task_id", "-"),
                    why,
                )
            self.recall(event)
            return []
        try:
            return await self._answer(event)
        except LLMError as exc:
            log.error(
                "%s: no answer to %s for %s: %s",
                self.agent_id,
                event.type,
                getattr(event, "task_id", "-"),
                exc,
            )
            return []

    def answered(self, event: Event) -> None:
        """Called once the answer to `event` is sent (its replies acknowledged): an event
        addressed to this agent is never answered again (`respond`)."""
        if self.addressed(event):
            self.handled.add([(event.event_id, event.occurred_at)], self.clock())

    def addressed(self, event: Event) -> bool:
        """Whether `event` asks something of this agent: a task of its kinds (a bid, or the
        draft a call waits for), a call for its draft, a jury or refinement naming it, its
        award."""
        match event:
            case TaskPosted():
                return event.kind in self.config.kinds
            case BidRequested():
                return event.agent_id == self.agent_id
            case JuryCalled():
                return self.agent_id in event.jurors
            case RefinementCalled():
                return any(invite.agent_id == self.agent_id for invite in event.invites)
            case AuctionClosed():
                return event.winner_agent_id == self.agent_id
        return False

    def stale(self, event: Event) -> str | None:
        """Why `event` is too old to answer, or None. A call or an award (or, in the paper
        auction, a task, which calls for plans) is refused once older than the window: its
        date is signed by its sender, so a replay cannot make it younger, and the ids of
        those answered are kept only that long (`agents.handled`)."""
        calls = (BidRequested, JuryCalled, RefinementCalled, AuctionClosed)
        if not isinstance(event, calls) and not (
            isinstance(event, TaskPosted) and self.mechanism == "paper"
        ):
            return None
        age = self.clock() - aware(event.occurred_at)
        if age <= self.handled.window:
            return None
        window = self.handled.window.total_seconds()
        return f"{age.total_seconds():.0f} s old, over the {window:g} s replay window"

    async def _answer(self, event: Event) -> list[Event]:
        """The one dispatcher of the agent's side of the protocol (the scripted agent of the
        tests and load tests is this agent with a scripted model: `agents.scripted_agent`)."""
        match event:
            case TaskPosted() if event.kind in self.config.kinds:
                self._remember(event)
                asked = self.asked.pop(event.task_id, None)
                if asked is not None and self.stale(asked) is None:
                    return [await self.draft_bid(event, asked.feedback)]
                if self.mechanism == "lean":
                    return []
                return [await self.bid(event, 0, prompts.bid(event), [])]
            case BidRequested() if event.agent_id == self.agent_id and event.task_id in self.tasks:
                return [await self.draft_bid(self.tasks[event.task_id], event.feedback)]
            case BidRequested() if event.agent_id == self.agent_id:
                # The call came before the task (they travel on different topics): it is
                # answered when the task arrives.
                self.asked[event.task_id] = event
            case AuctionClosed(mechanism="lean") if event.winner_agent_id == self.agent_id:
                return [self.deliver(event)]
            case JuryCalled() if self.agent_id in event.jurors and event.task_id in self.tasks:
                self._keep_plan(event)
                return [await self.judge(event.task_id, event.round, event.bids)]
            case RefinementCalled() if (
                event.task_id in self.tasks and event.task_id in self.plans  # its plan to refine
            ):
                for invite in event.invites:
                    if invite.agent_id == self.agent_id:
                        task = self.tasks[event.task_id]
                        messages = prompts.refine(task, self.plans[task.task_id], invite.examples)
                        refs = [e.task_id for e in invite.examples]
                        return [await self.bid(task, 1, messages, refs)]
            case AuctionClosed() if event.winner_agent_id == self.agent_id:
                return [await self.execute(event.task_id, event.winner_bid_id, event.winning_plan)]
        return []

    def recall(self, event: Event) -> None:
        """Takes back what an event read before a restart taught this agent, answering nothing:
        the task (for the calls, juries and awards still to come), a call still waiting for its
        task, and its own plan (for a refinement)."""
        match event:
            case TaskPosted() if event.kind in self.config.kinds:
                self._remember(event)
                self.asked.pop(event.task_id, None)  # answered when the task arrived
            case BidRequested() if (
                event.agent_id == self.agent_id and event.task_id not in self.tasks
            ):
                self.asked[event.task_id] = event
            case JuryCalled():
                self._keep_plan(event)

    def _keep_plan(self, jury: JuryCalled) -> None:
        """This agent's plan as the jury lists it: a refinement starts from it."""
        for bid in jury.bids:
            if bid.agent_id == self.agent_id and bid.round == 0:
                self.plans.setdefault(bid.task_id, bid.plan)

    def _remember(self, task: TaskPosted) -> None:
        self.tasks[task.task_id] = task
        while len(self.tasks) > KNOWN_TASKS:
            forgotten, _ = self.tasks.popitem(last=False)
            self.plans.pop(forgotten, None)
            self.failures.pop(forgotten, None)
            self.steps.pop(forgotten, None)

    async def draft_bid(self, task: TaskPosted, feedback: FailedDraft | None) -> BidSubmitted:
        """A draft bid: the program this agent writes (fixing `feedback`, a cheaper agent's
        failing draft, if given) and whether it passes the visible examples; for a general
        or a search task, the answer, and whether there is one. The draft is the
        work itself: if it wins, it is delivered as it is (`deliver`), not written again.
        Its entropy is not measured (the executor asks for no log-probabilities): 0."""
        attempt = coding.Attempt(feedback.source, Usage(), feedback.error) if feedback else None
        result = await self.draft(task, attempt)
        source = result.output if result.output.strip() else ""
        failure = result.error
        if len(source) > MAX_PLAN:  # too long for a bid: it cannot be delivered, so it fails
            source, failure = source[:MAX_PLAN], f"the program is over {MAX_PLAN} characters"
        failure = failure[:MAX_REASON] if failure is not None else None
        self.failures[task.task_id] = failure
        return BidSubmitted(
            producer=self.agent_id,
            task_id=task.task_id,
            agent_id=self.agent_id,
            model=self.llm.model,
            plan=source or ("(no code)" if task.kind == "coding" else "(no answer)"),
            plan_tokens=result.usage.completion_tokens,
            entropy=0.0,
            price=self.config.output_price,
            usage=result.usage,
            examples_pass=failure is None,
            failure=failure,
        )

    def deliver(self, closed: AuctionClosed) -> TaskResult:
        """The winning draft as the result, with no model call: it was paid for in the bid. A
        search draft's result tells the steps that found its answer (unless drafted before a
        restart: they are not in the log until delivered)."""
        failure = self.failures.get(closed.task_id)
        if closed.task_id not in self.failures:  # drafted before a restart: the close says
            mine = [d for d in closed.lean.drafts if d.bid_id == closed.winner_bid_id]
            failure = None if mine and mine[0].examples_pass else "it fails the visible examples"
        return TaskResult(
            producer=self.agent_id,
            task_id=closed.task_id,
            agent_id=self.agent_id,
            bid_id=closed.winner_bid_id,
            output=closed.winning_plan,
            usage=Usage(),
            cost=0.0,
            error=failure,
            steps=self.steps.get(closed.task_id, []),
        )

    async def bid(
        self, task: TaskPosted, round_: int, messages: list, refs: list[str]
    ) -> BidSubmitted:
        completion = await self.llm.complete(messages, max_tokens=self.config.max_plan_tokens)
        plan = completion.text.strip() or "(empty plan)"
        self.plans[task.task_id] = plan
        return BidSubmitted(
            producer=self.agent_id,
            task_id=task.task_id,
            agent_id=self.agent_id,
            model=self.llm.model,
            round=round_,
            plan=plan,
            plan_tokens=completion.completion_tokens,
            entropy=completion.mean_entropy(),
            price=self.config.output_price,
            usage=completion.usage(self.config.price),
            memory_refs=refs,
        )

    async def judge(self, task_id: str, round_: int, bids: list[BidSubmitted]) -> ReviewSubmitted:
        """One short prompt per plan, all sharing the task prefix; scores read from logprobs."""
        task = self.tasks[task_id]
        usage, scores = Usage(), []
        for bid in bids:
            completion = await self.llm.complete(
                prompts.judge(task, bid.plan), max_tokens=2, top_logprobs=JURY_TOP_K
            )
            usage += completion.usage(self.config.price)
            scores.append(BidScore(bid_id=bid.bid_id, score=read_score(completion)))
        return ReviewSubmitted(
            producer=self.agent_id,
            task_id=task_id,
            juror=self.agent_id,
            round=round_,
            scores=scores,
            usage=usage,
        )

    async def execute(self, task_id: str, bid_id: UUID | None, plan: str | None) -> TaskResult:
        """Runs the task following `plan` (the bid this agent won with)."""
        task = self.tasks.get(task_id)
        if task is None:
            return TaskResult(
                producer=self.agent_id,
                task_id=task_id,
                agent_id=self.agent_id,
                bid_id=bid_id,
                output="",
                error="the task is unknown to this agent",
            )
        return await self.draft(task, plan=plan or "", bid_id=bid_id)

    async def draft(
        self,
        task: TaskPosted,
        feedback: coding.Attempt | None = None,
        *,
        plan: str = "",
        bid_id: UUID | None = None,
    ) -> TaskResult:
        """The task done by this agent's executor; given `feedback` (another agent's failing
        attempt), by fixing that. `error` says why the visible examples still fail, if they do."""
        start = time.monotonic()
        result = dict(
            producer=self.agent_id,
            task_id=task.task_id,
            agent_id=self.agent_id,
            bid_id=bid_id or task.event_id,
        )
        if task.kind == "general":
            return await self.general_answer(task, plan, result, start)
        if task.kind == "search":
            return await self.search(task, plan, result, start)
        try:
            done = await coding.execute(
                self.llm,
                task,
                plan,
                self.config.price,
                style=self.config.executor,
                max_rounds=self.config.execute_rounds,
                max_tokens=answer_tokens(self.config.execute_max_tokens, task),
                token_budget=self.config.execute_token_budget,
                feedback=feedback,
                sandbox=self.sandbox,
            )
        except LLMError as exc:
            return TaskResult(
                **result,
                output="",
                error=f"model failed: {exc}",
                duration_s=time.monotonic() - start,
            )
        return TaskResult(
            **result,
            output=done.output,
            usage=done.usage,
            cost=done.usage.cost,
            duration_s=time.monotonic() - start,
            error=done.error,
        )

    async def general_answer(
        self, task: TaskPosted, plan: str, result: dict, start: float
    ) -> TaskResult:
        """A general task: one completion, the answer as text. An empty answer is this
        agent's failure to answer (the lean auction then asks the next agent)."""
        try:
            completion = await self.llm.complete(
                prompts.answer(task, plan),
                max_tokens=answer_tokens(self.config.execute_max_tokens, task),
                top_logprobs=0,
            )
        except LLMError as exc:
            return TaskResult(
                **result,
                output="",
                error=f"model failed: {exc}",
                duration_s=time.monotonic() - start,
            )
        text = completion.text.strip()[:MAX_PLAN]  # a draft must fit in a bid
        usage = completion.usage(self.config.price)
        return TaskResult(
            **result,
            output=text,
            usage=usage,
            cost=usage.cost,
            duration_s=time.monotonic() - start,
            error=None if text else "no answer: the model returned nothing",
        )

    async def search(self, task: TaskPosted, plan: str, result: dict, start: float) -> TaskResult:
        """A search task: the tool loop on the task's corpus, following `plan` (paper) if any;
        the answer is the output, the loop's steps the story, every call's usage the cost. No
        answer is this agent's failure to answer (the lean auction treats it as a failing
        draft)."""
        corpus = task.inputs.corpus
        try:
            tool = await asyncio.to_thread(self.tools, corpus)
        except searching.ToolUnavailable as exc:
            return TaskResult(
                **result,
                output="",
                error=f"no search tool: {exc}"[:MAX_REASON],
                duration_s=time.monotonic() - start,
            )
        budget = searching.Budget(
            max_steps=self.config.search_max_steps,
            token_budget=self.config.search_token_budget,
            answer_tokens=task.max_tokens,
        )
        done = await searching.run(
            self.llm, tool, task, plan, self.config.price, budget, self.config.searcher
        )
        self.steps[task.task_id] = done.steps
        return TaskResult(
            **result,
            output=done.answer,
            usage=done.usage,
            cost=done.usage.cost,
            duration_s=time.monotonic() - start,
            error=done.error[:MAX_REASON] if done.error else None,
            steps=done.steps,
        )


def answer_tokens(own: int, task: TaskPosted) -> int:
    """The most tokens a call that writes the task's answer may generate: the agent's own
    limit, or the client's cap (`TaskPosted.max_tokens`, OpenAI's `max_tokens`) if lower.
    The calls that write the answer: a general task's one completion, every round of a coding
    draft (each writes the whole program), a search loop's forced last answer
    (`searching.Budget.answer_tokens`). Plans, jury scores and search actions are not the
    answer and keep their own limits."""
    return own if task.max_tokens is None else min(own, task.max_tokens)
