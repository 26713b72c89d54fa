"""Posting a task and waiting for its answer: the `Client`.

A client posts a task with its checks (the one way postings are sent, `shared.posting`), either
fire-and-forget (`post`: the task's id back, its answer for `result` later) or waiting for what
the marketplace says of it (`submit`, `ask`, `submit_many`): the `AuctionClosed`, and with a
winner the winning bid, its `TaskResult` and the verifier's `TaskOutcome`, folded into an
`Outcome` by the client's one reader of the answer streams (`waiting.Watch`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

from marketplace.client.errors import InvalidTask, Refused, SubmitTimeout
from marketplace.client.lookup import result
from marketplace.client.waiting import Watch
from marketplace.log.outcomes import Outcome
from marketplace.shared import signing
from marketplace.shared.bus import Bus
from marketplace.shared.config import Config
from marketplace.shared.keyfiles import trust_of
from marketplace.shared.posting import PRODUCER, Posting, default_checks, misfit, publish_one
from schemas.codec import encode
from schemas.events import GeneralInputs, TaskChecks, TaskPosted

DEFAULT_TIMEOUT_S = 300.0


class Client:
    """Posts tasks and waits for their outcomes. Use it as an async context manager.

    `trust`: the keys to sign with and check against; default: the process's own when it has
    the client's key (the command line installs them), else those `[security]` names.
    """

    def __init__(
        self, config: Config, *, producer: str = PRODUCER, trust: signing.Trust | None = None
    ) -> None:
        self.config = config
        self.bus = Bus(config.broker, producer, trust or _trust(config, producer))
        self._watch = Watch(self.bus)

    async def __aenter__(self) -> Client:
        await self.bus.start()  # creates any missing topic first
        try:
            await self._watch.start()
        except BaseException:
            await self.bus.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._watch.stop()  # with the broker gone, its consumer's stop may fail
        finally:
            await self.bus.stop()

    async def post(self, task: TaskPosted, checks: TaskChecks | None = None) -> str:
        """Posts the task and its checks without waiting for an answer; returns the task's
        id (its answer: `result`, later). Raises `InvalidTask` before sending anything."""
        posting = self.posting(task, checks)
        await publish_one(self.bus, posting)
        return posting.task.task_id

    async def submit(
        self,
        task: TaskPosted,
        checks: TaskChecks | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Outcome:
        """Posts the task and its checks; returns its final outcome. Raises `Refused` when the
        auction refuses it, `SubmitTimeout` when no final outcome comes in time."""
        outcome = await self._settle(self.posting(task, checks), timeout_s)
        if outcome.status == "refused":
            raise Refused(outcome)
        return outcome

    async def ask(
        self,
        prompt: str,
        tenant: str = "default",
        budget: float | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_tokens: int | None = None,
    ) -> Outcome:
        """A general request: the prompt answered as text by the agent the auction picks, in
        at most `max_tokens` generated tokens if given."""
        task = general_task(prompt, tenant, budget, max_tokens)
        return await self.submit(task, None, timeout_s)

    async def submit_many(
        self,
        pairs: Iterable[tuple[TaskPosted, TaskChecks | None]],
        concurrency: int = 8,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[Outcome]:
        """Each task's outcome, in the order given, with at most `concurrency` waited for at
        once. A refusal or a timeout is that task's outcome (its status says which, and a
        timed-out task's outcome is what was known by then), not an exception; a task that
        cannot be posted at all raises `InvalidTask` before anything is sent."""
        if concurrency < 1:
            raise ValueError(f"concurrency: must be at least 1, not {concurrency}")
        postings = [self.posting(task, checks) for task, checks in pairs]
        ids = [p.task.task_id for p in postings]
        if repeated := sorted({i for i in ids if ids.count(i) > 1}):
            raise InvalidTask(f"task ids repeated in one batch: {', '.join(repeated)}")
        slots = asyncio.Semaphore(concurrency)

        async def one(posting: Posting) -> Outcome:
            async with slots:
                try:
                    return await self._settle(posting, timeout_s)
                except SubmitTimeout as late:
                    return late.outcome or Outcome(task_id=posting.task.task_id, status="posted")

        return list(await asyncio.gather(*(one(p) for p in postings)))

    async def result(self, task_id: str) -> Outcome | None:
        """The task's outcome so far from the log (`lookup.result`); None: the task is
        unknown."""
        return await result(self.config, task_id, self.bus.trust)

    def posting(self, task: TaskPosted, checks: TaskChecks | None) -> Posting:
        """The task and its checks as they will be sent (signed as this client), or
        `InvalidTask` saying why they cannot be."""
        if (why := misfit(task, checks)) is not None:
            raise InvalidTask(why, task.task_id)
        checks = checks or default_checks(task)
        if checks is None:
            raise InvalidTask(
                f"task {task.task_id}: a {task.kind} task needs its checks (the hidden tests "
                "or answers the verifier judges its result by)",
                task.task_id,
            )
        own = {"producer": self.bus.producer}
        posting = Posting(task.model_copy(update=own), checks.model_copy(update=own))
        for event in (posting.task, posting.checks):
            try:
                encode(event, self.config.broker.max_record_bytes)
            except ValueError as exc:
                raise InvalidTask(f"task {task.task_id}: {exc}", task.task_id) from None
        return posting

    async def _settle(self, posting: Posting, timeout_s: float) -> Outcome:
        """Posts, then waits for the final outcome (watching begins before the post)."""
        with self._watch.watching(posting.task):
            await publish_one(self.bus, posting)
            return await self._watch.wait(posting.task.task_id, timeout_s)


def general_task(
    prompt: str,
    tenant: str = "default",
    budget: float | None = None,
    max_tokens: int | None = None,
) -> TaskPosted:
    """A general task with a fresh id: a prompt to answer as text, nothing hidden to check."""
    return TaskPosted(
        producer=PRODUCER,
        task_id=f"ask-{uuid.uuid4().hex[:12]}",
        kind="general",
        prompt=prompt,
        inputs=GeneralInputs(),
        tenant=tenant,
        budget=budget,
        max_tokens=max_tokens,
    )


def _trust(config: Config, producer: str) -> signing.Trust:
    current = signing.current()
    if config.security.keyring is None and current.signer(producer) is not None:
        return current
    return trust_of(config.security)
