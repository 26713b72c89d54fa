"""The benchmark's matrix: every agent drafts every task once; plans and reviews where needed.

Compute once, evaluate many. Each agent's draft of each task (the chosen executor, no plan),
graded by the hidden checks, is shared by every method the benchmark compares; so are the
escalations (a dearer agent's draft written after a cheaper agent's draft failed the visible
examples, with that failure as feedback) and, on the tasks the paper's auction is run or fitted
on, every agent's round-0 plan and its jury scores of every plan. All of it is computed once per
task and agent and kept in Postgres (`matrix_cells`), with every model call also kept in
`completions` (agents.cache). Only the paper's refinement, which depends on memory and so on
task order, makes new work later.

Several worker processes (one model thread each) fill the same matrix. Work items — (task,
agent, draft | escalate | bid | judge) — are claimed with Postgres advisory locks, so two workers
never compute the same item and both stay busy until the end; a model is loaded by a worker when
it first needs it. An interrupted build resumes where it stopped: a cell exists or it does not.
A matrix is named by a fingerprint of the agents' settings, so a changed executor or model
starts a new matrix instead of mixing old cells with new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from agents import prompts
from agents.agent import LLMAgent
from agents.coding import Attempt
from agents.llm import LLMError
from agents.searching import Corpora
from marketplace.core.lean_auction import checkable
from marketplace.evaluation.task_sets import parse_task_sets
from marketplace.services.verifier import verify
from marketplace.shared.config import AgentConfig, Config
from marketplace.shared.errors import UserError
from marketplace.shared.migrate import apply_migrations
from marketplace.shared.posting import Posting
from schemas.codec import decode, encode
from schemas.events import BidSubmitted, ReviewSubmitted, TaskOutcome, TaskPosted, TaskResult

log = logging.getLogger("matrix")
POLL_S = 5.0
# Settings an agent's answers do not depend on. A new setting that does not change answers must
# be added here, or every stored matrix would look stale.
NOT_IN_FINGERPRINT = {
    "input_price",
    "output_price",
    "cached_input_price",
    "heartbeat_s",
    "cache",
    "cache_url",
    "replay_window_s",
    "state_dir",
}

_CELLS = "SELECT task_id, agent_id, kind, event, seen FROM matrix_cells WHERE matrix = $1"
_PUT = """
INSERT INTO matrix_cells (matrix, task_id, agent_id, kind, event, seen)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (matrix, task_id, agent_id, kind)
DO UPDATE SET event = EXCLUDED.event, seen = EXCLUDED.seen, created_at = now()
"""
DRAFT_KINDS = ("result", "outcome", "escalation")  # cells checked against the visible examples


# Kinds of task the coding matrix never holds, and settings only they read: taking them, or
# changing those, changes no answer in it.
NOT_IN_MATRIX = {"general", "search"}
OTHER_KINDS_SETTINGS = {"search_max_steps", "search_token_budget", "searcher"}
# Settings only a coding task's draft reads: the search matrix is named without them.
CODING_SETTINGS = {"executor", "execute_rounds", "execute_max_tokens", "execute_token_budget"}
MatrixKind = Literal["coding", "search"]


def fingerprint(agents: Sequence[AgentConfig], kind: MatrixKind = "coding") -> str:
    """The matrix's name: what the agents' answers on tasks of `kind` depend on (not prices,
    which apply later). Coding and search tasks have matrices of their own, so a search
    setting (the searcher prompt, the loop's budgets) names a new search matrix and leaves the
    coding one (and its archive) standing, and the other way round."""
    settings = []
    for agent in sorted(agents, key=lambda a: a.id):
        if kind == "coding":
            setting = agent.model_dump(
                mode="json", exclude=NOT_IN_FINGERPRINT | OTHER_KINDS_SETTINGS
            )
            setting["kinds"] = [k for k in setting["kinds"] if k not in NOT_IN_MATRIX]
        else:
            setting = agent.model_dump(mode="json", exclude=NOT_IN_FINGERPRINT | CODING_SETTINGS)
            setting["kinds"] = [k for k in setting["kinds"] if k == kind]
        settings.append(setting)
    named: object = settings if kind == "coding" else {"kind": kind, "agents": settings}
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()[:12]


def kind_of(postings: Sequence[Posting]) -> MatrixKind:
    """The one kind of matrix `postings` go in; ValueError if they mix coding and search (their
    matrices are named apart) or hold a task no matrix holds."""
    kinds = {p.task.kind for p in postings} or {"coding"}
    if len(kinds) > 1:
        raise ValueError(
            f"coding and search tasks go in matrices of their own: run them apart ({kinds})"
        )
    [kind] = kinds
    if kind not in ("coding", "search"):
        raise ValueError(f"no matrix holds {kind} tasks")
    return kind  # type: ignore[return-value]


def name_of(agents: Sequence[AgentConfig], postings: Sequence[Posting]) -> str:
    """The name of the matrix `postings` go in (`fingerprint` for their kind)."""
    return fingerprint(agents, kind_of(postings))


def seen(task: TaskPosted) -> str:
    """A digest of what an agent sees of the task: its prompt and its visible inputs."""
    visible = json.dumps([task.prompt, task.inputs.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(visible.encode()).hexdigest()[:16]


def current(digests: dict[str, str], task_id: str, kind: str, digest: str) -> bool:
    """Whether a stored cell still stands (`digests`: task id → `seen` now): a draft's verdict
    on the visible examples does only if it was checked against the task's examples now."""
    return not kind.startswith(DRAFT_KINDS) or digests.get(task_id) == digest


# --- the matrix as values --------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """An agent's execution of a task and the hidden checks' verdict on it."""

    result: TaskResult
    outcome: TaskOutcome

    @property
    def passed(self) -> bool:
        return self.outcome.passed

    @property
    def self_check(self) -> bool:
        """The agent's own check: its code passed the task's visible examples."""
        return self.result.error is None


@dataclass(frozen=True)
class Cell(Draft):
    """One agent on one task: its draft and, where the paper's auction needs them, its round-0
    bid and its review of every round-0 bid on the task."""

    bid: BidSubmitted | None = None
    review: ReviewSubmitted | None = None


@dataclass(frozen=True)
class Matrix:
    tasks: tuple[str, ...]
    agents: tuple[str, ...]
    cells: dict[tuple[str, str], Cell]
    prompts: dict[str, str]
    escalations: dict[tuple[str, str, str], Draft] = field(default_factory=dict)
    """(task, agent, the cheaper agent whose failing draft it was shown) → its draft."""
    unchecked: frozenset[str] = frozenset()
    """Tasks that print no example: their drafts' checks are no evidence."""
    kind: MatrixKind = "coding"
    """Search drafts are graded by exact match (passed) and token F1 (the outcome's score)."""

    def cell(self, task_id: str, agent_id: str) -> Cell:
        return self.cells[(task_id, agent_id)]

    def complete_tasks(self, plans: bool = False) -> tuple[str, ...]:
        """Tasks with every agent's draft (and, with `plans`, every bid and review)."""
        return tuple(
            t
            for t in self.tasks
            if all(
                (t, a) in self.cells
                and (not plans or (self.cells[(t, a)].bid and self.cells[(t, a)].review))
                for a in self.agents
            )
        )

    def escalation(self, task_id: str, agent_id: str, after: str) -> Draft | None:
        return self.escalations.get((task_id, agent_id, after))


def assemble(
    postings: Sequence[Posting], agents: Sequence[str], rows: Sequence[tuple[str, str, str, str]]
) -> Matrix:
    """The matrix from stored rows (task, agent, kind, event JSON); drafts without their
    verdict are left out."""
    found: dict[tuple[str, str], dict[str, object]] = defaultdict(dict)
    for task_id, agent_id, kind, event in rows:
        found[(task_id, agent_id)][kind] = decode(event)
    cells, escalations = {}, {}
    for (task_id, agent_id), parts in found.items():
        if "result" in parts and "outcome" in parts:
            cells[(task_id, agent_id)] = Cell(
                parts["result"], parts["outcome"], parts.get("bid"), parts.get("review")
            )
        for kind, result in parts.items():
            if kind.startswith("escalation:") and (
                verdict := parts.get(kind.replace(":", "_outcome:", 1))
            ):
                after = kind.split(":", 1)[1]
                escalations[(task_id, agent_id, after)] = Draft(result, verdict)
    return Matrix(
        tasks=tuple(p.task.task_id for p in postings),
        agents=tuple(agents),
        cells=cells,
        prompts={p.task.task_id: p.task.prompt for p in postings},
        escalations=escalations,
        unchecked=frozenset(p.task.task_id for p in postings if not checkable(p.task)),
        kind=kind_of(postings),
    )


async def load_matrix(
    conn: asyncpg.Connection, name: str, postings: Sequence[Posting], agents: Sequence[str]
) -> Matrix:
    digests = {p.task.task_id: seen(p.task) for p in postings}
    rows = [
        (r["task_id"], r["agent_id"], r["kind"], r["event"])
        for r in await conn.fetch(_CELLS, name)
        if r["task_id"] in digests and current(digests, r["task_id"], r["kind"], r["seen"])
    ]
    return assemble(postings, agents, rows)


# --- filling it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to compute: drafts of every task, plans and reviews of `plan_tasks`, and the
    escalations `(cheaper, dearer)` wherever the cheaper agent's draft fails its examples."""

    postings: tuple[Posting, ...]
    agents: tuple[str, ...]
    plan_tasks: frozenset[str] = frozenset()
    escalate: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Item:
    task_index: int
    agent_id: str
    kind: str  # "draft", "escalate:<cheaper agent>", "bid" or "judge"

    def lock_key(self, matrix: str) -> int:
        digest = hashlib.sha256(f"{matrix}/{self.task_index}/{self.agent_id}/{self.kind}".encode())
        return int.from_bytes(digest.digest()[:8], "big", signed=True)

    @property
    def stored_as(self) -> str:
        """The kind of the cell that exists once this item is done."""
        if self.kind.startswith("escalate:"):
            return "escalation_outcome:" + self.kind.split(":", 1)[1]
        return {"draft": "outcome", "bid": "bid", "judge": "review"}[self.kind]


def items(plan: Plan) -> Iterator[Item]:
    """Task by task, so finished tasks accumulate from the start; drafts first within a task."""
    for index, posting in enumerate(plan.postings):
        for agent_id in plan.agents:
            yield Item(index, agent_id, "draft")
        for cheaper, dearer in plan.escalate:
            yield Item(index, dearer, f"escalate:{cheaper}")
        if posting.task.task_id in plan.plan_tasks:
            for kind in ("bid", "judge"):
                for agent_id in plan.agents:
                    yield Item(index, agent_id, kind)


class Worker:
    """One process's share: it claims items no other worker holds and computes them."""

    def __init__(self, config: Config, name: str, plan: Plan, conn: asyncpg.Connection) -> None:
        self.config = config
        self.name = name
        self.plan = plan
        self.conn = conn
        self.agents: dict[str, LLMAgent] = {}
        self.corpora: Corpora | None = None
        self.digests = {p.task.task_id: seen(p.task) for p in plan.postings}

    def agent(self, agent_id: str) -> LLMAgent:
        if agent_id not in self.agents:
            from agents.backends import build
            from agents.cache import CachedLLM

            settings = self.config.agent(agent_id)
            llm = CachedLLM(build(settings), self.config.database.url)
            if self.corpora is None:  # one index per corpus, shared by the worker's agents
                self.corpora = Corpora(self.config.corpora)
            self.agents[agent_id] = LLMAgent(settings, llm, tools=self.corpora)
        return self.agents[agent_id]

    async def close(self) -> None:
        for agent in self.agents.values():
            await agent.llm.close()  # type: ignore[attr-defined]  (a CachedLLM)

    async def run(self) -> int:
        """Does the first item that is ready, needed and unclaimed, again and again, until none
        is left (earliest tasks first, so whole tasks finish from the start); returns how many
        it did."""
        computed, failed = 0, set()
        while True:
            done = await self._done()
            todo = [
                i
                for i in items(self.plan)
                if (self._task(i), i.agent_id, i.stored_as) not in done
                and i not in failed
                and self._needed(i, done)
            ]
            if not todo:
                return computed
            for item in todo:
                if not self._ready(item, done):
                    continue
                try:
                    if await self._claim_and_do(item):
                        computed += 1
                        break
                except LLMError as exc:
                    log.error("%s: %s (skipped in this run)", item, exc)
                    failed.add(item)
                    break
            else:
                await asyncio.sleep(POLL_S)  # what is left waits for another worker's work

    def _task(self, item: Item) -> str:
        return self.plan.postings[item.task_index].task.task_id

    async def _done(self) -> dict[tuple[str, str, str], str]:
        """(task, agent, kind) of every stored cell → its event (JSON)."""
        rows = await self.conn.fetch(_CELLS, self.name)
        return {
            (r["task_id"], r["agent_id"], r["kind"]): r["event"]
            for r in rows
            if current(self.digests, r["task_id"], r["kind"], r["seen"])
        }

    def _needed(self, item: Item, done: dict) -> bool:
        """An escalation is needed only once the cheaper agent's draft is known to fail."""
        if not item.kind.startswith("escalate:"):
            return True
        cheaper = item.kind.split(":", 1)[1]
        draft = done.get((self._task(item), cheaper, "result"))
        return draft is None or decode(draft).error is not None

    def _ready(self, item: Item, done: dict) -> bool:
        task_id = self._task(item)
        if item.kind.startswith("escalate:"):
            return (task_id, item.kind.split(":", 1)[1], "outcome") in done
        if item.kind == "judge":
            return all((task_id, a, "bid") in done for a in self.plan.agents)
        return True

    async def _claim_and_do(self, item: Item) -> bool:
        key = item.lock_key(self.name)
        if not await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            return False
        try:
            done = await self._done()
            if (self._task(item), item.agent_id, item.stored_as) in done:
                return False
            start = time.monotonic()
            await self._do(item, done)
            log.info(
                "%s %s %s in %.1fs",
                self._task(item),
                item.agent_id,
                item.kind,
                time.monotonic() - start,
            )
            return True
        finally:
            await self.conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def _do(self, item: Item, done: dict) -> None:
        posting = self.plan.postings[item.task_index]
        task = posting.task
        agent = self.agent(item.agent_id)
        agent._remember(task)
        if item.kind == "bid":
            await self._put(item.agent_id, "bid", await agent.bid(task, 0, prompts.bid(task), []))
        elif item.kind == "judge":
            bids = sorted(
                (decode(done[(task.task_id, a, "bid")]) for a in self.plan.agents),
                key=lambda b: b.agent_id,
            )
            await self._put(item.agent_id, "review", await agent.judge(task.task_id, 0, bids))
        else:
            feedback, suffix = None, ""
            if item.kind.startswith("escalate:"):
                cheaper = item.kind.split(":", 1)[1]
                failed = decode(done[(task.task_id, cheaper, "result")])
                feedback, suffix = Attempt(failed.output, failed.usage, failed.error), cheaper
            result = await agent.draft(task, feedback)
            assert posting.checks is not None
            outcome = await verify(posting.checks, result, producer=item.agent_id)
            tail = f":{suffix}" if suffix else ""
            await self._put(item.agent_id, "escalation" + tail if tail else "result", result)
            verdict = "escalation_outcome" + tail if tail else "outcome"
            await self._put(item.agent_id, verdict, outcome)

    async def _put(self, agent_id: str, kind: str, event: object) -> None:
        await self.conn.execute(
            _PUT,
            self.name,
            event.task_id,  # type: ignore[attr-defined]
            agent_id,
            kind,
            encode(event).decode(),  # type: ignore[attr-defined]
            self.digests[event.task_id],  # type: ignore[attr-defined]
        )


# --- the command -----------------------------------------------------------------------------


async def connect(config: Config) -> asyncpg.Connection:
    conn = await asyncpg.connect(config.database.url)
    await apply_migrations(conn)
    return conn


class EmptySplit(UserError, ValueError):
    """A split with no task that every agent has a draft of: nothing to compare on it."""


async def load_split(config: Config, specs: Sequence[str]) -> Matrix:
    """The stored matrix of the configured agents on the task sets `specs`; EmptySplit, saying
    what to run, when no task of them is complete."""
    conn = await connect(config)
    try:
        postings = parse_task_sets(specs)
        agents = [a.id for a in config.agents]
        name = name_of(config.agents, postings)
        loaded = await load_matrix(conn, name, postings, agents)
    finally:
        await conn.close()
    if not loaded.complete_tasks():
        raise EmptySplit(
            f"the matrix {name} has no task of {' '.join(specs)} with "
            f"every agent's draft: run `sale bench matrix --tasks {' '.join(specs)}` first"
        )
    return loaded


def make_plan(
    config: Config, specs: Sequence[str], plan_specs: Sequence[str], escalate: Sequence[str]
) -> Plan:
    """`escalate` as `CHEAPER:DEARER` agent pairs, e.g. `M:L`."""
    pairs = []
    for pair in escalate:
        cheaper, _, dearer = pair.partition(":")
        for agent_id in (cheaper, dearer):
            config.agent(agent_id)  # names a configured agent, or fails saying which
        pairs.append((cheaper, dearer))
    return Plan(
        postings=tuple(parse_task_sets(specs)),
        agents=tuple(a.id for a in config.agents),
        plan_tasks=frozenset(p.task.task_id for p in parse_task_sets(plan_specs)),
        escalate=tuple(pairs),
    )


async def work(config: Config, plan: Plan) -> int:
    """`sale bench worker`: one worker process until the matrix is full."""
    conn = await connect(config)
    try:
        worker = Worker(config, name_of(config.agents, plan.postings), plan, conn)
        try:
            return await worker.run()
        finally:
            await worker.close()
    finally:
        await conn.close()


async def build_matrix(config: Config, argv: Sequence[str], plan: Plan, workers: int) -> str:
    """Starts `workers` worker processes (`argv`: the worker command) and prints progress with
    an estimate of the time left."""
    name = name_of(config.agents, plan.postings)
    procs = [await asyncio.create_subprocess_exec(*argv) for _ in range(workers)]
    conn = await connect(config)
    try:
        print(f"matrix {name}: {len(plan.postings)} tasks × {len(plan.agents)} agents", flush=True)
        started, first = time.monotonic(), None
        while any(p.returncode is None for p in procs):
            probe = Worker(config, name, plan, conn)
            done = await probe._done()
            needed = [i for i in items(plan) if probe._needed(i, done)]
            made = sum((probe._task(i), i.agent_id, i.stored_as) in done for i in needed)
            first = made if first is None else first
            print(progress_line(made, len(needed), first, time.monotonic() - started), flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 60)
        codes = [p.returncode for p in procs]
        if any(codes):
            raise RuntimeError(f"a matrix worker failed (exit codes {codes}); rerun to resume")
    finally:
        await conn.close()
    return name


def progress_line(done: int, total: int, at_start: int, elapsed_s: float) -> str:
    """`items done/total`, and the time left at the rate seen since this run started."""
    made = done - at_start
    if made <= 0 or elapsed_s <= 0:
        return f"  {done}/{total} items"
    left_s = (total - done) * elapsed_s / made
    return (
        f"  {done}/{total} items, {made / elapsed_s * 3600:.0f}/h, about {left_s / 60:.0f} min left"
    )
