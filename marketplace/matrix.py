"""The benchmark's matrix: every agent bids on, judges and executes every task, once.

Compute once, evaluate many. Round-0 bids, the jury's scores of them and each agent's execution
of its own round-0 plan (graded by the hidden checks) are shared by every method the benchmark
compares, so they are computed once per task and agent and kept in Postgres (`matrix_cells`),
with every model call also kept in `completions` (agents.cache). Only refinement, which depends
on memory and so on task order, makes new work later.

Several worker processes (one model thread each) fill the same matrix. Work items — (task,
agent, bid | execute | judge) — are claimed with Postgres advisory locks, so two workers never
compute the same item and both stay busy until the end; a model is loaded by a worker when it
first needs it. An interrupted build resumes where it stopped: a cell exists or it does not.
A matrix is named by a fingerprint of the agents' settings, so a changed prompt limit or model
starts a new matrix instead of mixing old cells with new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import asyncpg

from agents import prompts
from agents.agent import LLMAgent
from agents.llm import LLMError
from marketplace.config import AgentConfig, Config
from marketplace.migrate import apply_migrations
from marketplace.publish import Posting, from_dataset
from marketplace.verifier import verify
from schemas.codec import decode, encode
from schemas.events import BidSubmitted, ReviewSubmitted, TaskOutcome, TaskResult

log = logging.getLogger("matrix")
KINDS = ("bid", "result", "outcome", "review")
POLL_S = 5.0
# Settings an agent's answers do not depend on. A new setting that does not change answers must
# be added here, or every stored matrix would look stale.
NOT_IN_FINGERPRINT = {"price_per_mtok", "heartbeat_s", "cache", "cache_url"}

_CELLS = "SELECT task_id, agent_id, kind, event FROM matrix_cells WHERE matrix = $1"
_PUT = """
INSERT INTO matrix_cells (matrix, task_id, agent_id, kind, event) VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT DO NOTHING
"""
_HAS = "SELECT count(*) FROM matrix_cells WHERE matrix = $1 AND task_id = $2 AND agent_id = $3"
_BIDS = "SELECT event FROM matrix_cells WHERE matrix = $1 AND task_id = $2 AND kind = 'bid'"


def fingerprint(agents: Sequence[AgentConfig]) -> str:
    """The matrix's name: what the agents' answers depend on (not prices, which apply later)."""
    settings = [
        a.model_dump(mode="json", exclude=NOT_IN_FINGERPRINT)
        for a in sorted(agents, key=lambda a: a.id)
    ]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def parse_task_sets(specs: Sequence[str]) -> list[Posting]:
    """`humaneval:0:164 mbpp:0:100` → the postings, in that order."""
    postings = []
    for spec in specs:
        try:
            name, start, stop = spec.split(":")
            postings += from_dataset(name, int(start), int(stop))
        except ValueError as exc:
            raise ValueError(f"task set {spec!r}: expected DATASET:START:STOP ({exc})") from None
    return postings


# --- the matrix as values --------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One agent on one task: its round-0 bid, its execution of that plan, and the verdict."""

    bid: BidSubmitted
    result: TaskResult
    outcome: TaskOutcome
    review: ReviewSubmitted  # this agent as a juror of every round-0 bid on the task

    @property
    def passed(self) -> bool:
        return self.outcome.passed

    @property
    def self_check(self) -> bool:
        """The agent's own check: its code passed the task's visible examples."""
        return self.result.error is None


@dataclass(frozen=True)
class Matrix:
    tasks: tuple[str, ...]
    agents: tuple[str, ...]
    cells: dict[tuple[str, str], Cell]
    prompts: dict[str, str]

    def cell(self, task_id: str, agent_id: str) -> Cell:
        return self.cells[(task_id, agent_id)]

    def complete_tasks(self) -> tuple[str, ...]:
        return tuple(t for t in self.tasks if all((t, a) in self.cells for a in self.agents))


def assemble(
    postings: Sequence[Posting], agents: Sequence[str], rows: Sequence[tuple[str, str, str, str]]
) -> Matrix:
    """The matrix from stored rows (task, agent, kind, event JSON); partial cells are left out."""
    found: dict[tuple[str, str], dict[str, object]] = defaultdict(dict)
    for task_id, agent_id, kind, event in rows:
        found[(task_id, agent_id)][kind] = decode(event)
    cells = {key: Cell(**parts) for key, parts in found.items() if all(k in parts for k in KINDS)}
    return Matrix(
        tasks=tuple(p.task.task_id for p in postings),
        agents=tuple(agents),
        cells=cells,
        prompts={p.task.task_id: p.task.prompt for p in postings},
    )


async def load_matrix(
    conn: asyncpg.Connection, name: str, postings: Sequence[Posting], agents: Sequence[str]
) -> Matrix:
    rows = await conn.fetch(_CELLS, name)
    wanted = {p.task.task_id for p in postings}
    kept = [(r["task_id"], r["agent_id"], r["kind"], r["event"]) for r in rows]
    return assemble(postings, agents, [r for r in kept if r[0] in wanted])


# --- filling it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    task_index: int
    agent_id: str
    kind: str  # "bid", "execute" or "judge"

    def lock_key(self, matrix: str) -> int:
        digest = hashlib.sha256(f"{matrix}/{self.task_index}/{self.agent_id}/{self.kind}".encode())
        return int.from_bytes(digest.digest()[:8], "big", signed=True)


def items(tasks: int, agents: Sequence[str]) -> Iterator[Item]:
    """Task by task, so finished tasks accumulate from the start; bids first within a task."""
    for index in range(tasks):
        for kind in ("bid", "execute", "judge"):
            for agent_id in agents:
                yield Item(index, agent_id, kind)


class Worker:
    """One process's share: it claims items no other worker holds and computes them."""

    def __init__(
        self, config: Config, name: str, postings: Sequence[Posting], conn: asyncpg.Connection
    ) -> None:
        self.config = config
        self.name = name
        self.postings = postings
        self.conn = conn
        self.agents: dict[str, LLMAgent] = {}

    def agent(self, agent_id: str) -> LLMAgent:
        if agent_id not in self.agents:
            from agents.backends import build
            from agents.cache import CachedLLM

            settings = self.config.agent(agent_id)
            llm = CachedLLM(build(settings), self.config.database.url)
            self.agents[agent_id] = LLMAgent(settings, llm)
        return self.agents[agent_id]

    async def close(self) -> None:
        for agent in self.agents.values():
            await agent.llm.close()  # type: ignore[attr-defined]  (a CachedLLM)

    async def run(self) -> int:
        """Does the first item that is ready and unclaimed, again and again, until none is left
        (earliest tasks first, so whole tasks finish from the start); returns how many it did."""
        agent_ids = [a.id for a in self.config.agents]
        computed, failed = 0, set()
        while True:
            done = await self._done()
            todo = [
                i
                for i in items(len(self.postings), agent_ids)
                if not self._is_done(i, done) and i not in failed
            ]
            if not todo:
                return computed
            for item in todo:
                if not await self._ready(item):
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
                await asyncio.sleep(POLL_S)  # what is left waits for another worker's bids

    async def _done(self) -> set[tuple[str, str, str]]:
        rows = await self.conn.fetch(
            "SELECT task_id, agent_id, kind FROM matrix_cells WHERE matrix = $1", self.name
        )
        return {(r["task_id"], r["agent_id"], r["kind"]) for r in rows}

    def _is_done(self, item: Item, done: set[tuple[str, str, str]]) -> bool:
        task_id = self.postings[item.task_index].task.task_id
        kind = {"bid": "bid", "execute": "outcome", "judge": "review"}[item.kind]
        return (task_id, item.agent_id, kind) in done

    async def _ready(self, item: Item) -> bool:
        task_id = self.postings[item.task_index].task.task_id
        bids = await self.conn.fetch(_BIDS, self.name, task_id)
        if item.kind == "bid":
            return True
        if item.kind == "execute":
            return any(decode(r["event"]).agent_id == item.agent_id for r in bids)
        return len(bids) == len(self.config.agents)

    async def _claim_and_do(self, item: Item) -> bool:
        key = item.lock_key(self.name)
        if not await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            return False
        try:
            if self._is_done(item, await self._done()):
                return False
            start = time.monotonic()
            await self._do(item)
            log.info(
                "%s %s %s in %.1fs",
                self.postings[item.task_index].task.task_id,
                item.agent_id,
                item.kind,
                time.monotonic() - start,
            )
            return True
        finally:
            await self.conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def _do(self, item: Item) -> None:
        posting = self.postings[item.task_index]
        task = posting.task
        agent = self.agent(item.agent_id)
        agent._remember(task)
        bids = [decode(r["event"]) for r in await self.conn.fetch(_BIDS, self.name, task.task_id)]
        if item.kind == "bid":
            await self._put(await agent.bid(task, 0, prompts.bid(task), []))
        elif item.kind == "execute":
            [own] = [b for b in bids if b.agent_id == item.agent_id]
            result = await agent.execute(task.task_id, own.bid_id, own.plan)
            await self._put(result)
            assert posting.checks is not None
            outcome = await verify(posting.checks, result, producer=item.agent_id)
            await self._put(outcome, agent_id=item.agent_id)
        else:
            bids.sort(key=lambda b: b.agent_id)
            await self._put(await agent.judge(task.task_id, 0, bids))

    async def _put(self, event: object, agent_id: str | None = None) -> None:
        kind = {
            BidSubmitted: "bid",
            TaskResult: "result",
            TaskOutcome: "outcome",
            ReviewSubmitted: "review",
        }[type(event)]
        who = agent_id or getattr(event, "agent_id", None) or event.juror  # type: ignore[attr-defined]
        await self.conn.execute(
            _PUT,
            self.name,
            event.task_id,
            who,
            kind,
            encode(event).decode(),  # type: ignore[attr-defined]
        )


# --- the command -----------------------------------------------------------------------------


async def connect(config: Config) -> asyncpg.Connection:
    conn = await asyncpg.connect(config.database.url)
    await apply_migrations(conn)
    return conn


async def load_split(config: Config, specs: Sequence[str]) -> Matrix:
    """The stored matrix of the configured agents on the task sets `specs`."""
    conn = await connect(config)
    try:
        postings = parse_task_sets(specs)
        agents = [a.id for a in config.agents]
        return await load_matrix(conn, fingerprint(config.agents), postings, agents)
    finally:
        await conn.close()


async def work(config: Config, specs: Sequence[str]) -> int:
    """`sale bench worker`: one worker process until the matrix is full."""
    postings = parse_task_sets(specs)
    conn = await connect(config)
    try:
        worker = Worker(config, fingerprint(config.agents), postings, conn)
        try:
            return await worker.run()
        finally:
            await worker.close()
    finally:
        await conn.close()


async def build_matrix(config: Config, config_file: str, specs: Sequence[str], workers: int) -> str:
    """Starts `workers` worker processes and prints progress with an estimate of the time left."""
    name = fingerprint(config.agents)
    postings = parse_task_sets(specs)
    total = len(postings) * len(config.agents) * len(KINDS)
    argv = [sys.executable, "-m", "marketplace.cli", "--config", config_file, "bench", "worker"]
    procs = [await asyncio.create_subprocess_exec(*argv, "--tasks", *specs) for _ in range(workers)]
    conn = await connect(config)
    try:
        print(f"matrix {name}: {len(postings)} tasks × {len(config.agents)} agents", flush=True)
        started, first = time.monotonic(), None
        while any(p.returncode is None for p in procs):
            done = await conn.fetchval(
                "SELECT count(*) FROM matrix_cells WHERE matrix = $1 AND task_id = ANY($2)",
                name,
                [p.task.task_id for p in postings],
            )
            first = done if first is None else first
            print(progress_line(done, total, first, time.monotonic() - started), flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 60)
        codes = [p.returncode for p in procs]
        if any(codes):
            raise RuntimeError(f"a matrix worker failed (exit codes {codes}); rerun to resume")
    finally:
        await conn.close()
    return name


def progress_line(done: int, total: int, at_start: int, elapsed_s: float) -> str:
    """`cells done/total`, and the time left at the rate seen since this run started."""
    made = done - at_start
    if made <= 0 or elapsed_s <= 0:
        return f"  {done}/{total} cells"
    left_s = (total - done) * elapsed_s / made
    return (
        f"  {done}/{total} cells, {made / elapsed_s * 3600:.0f}/h, about {left_s / 60:.0f} min left"
    )
