"""`sale run`: the main job. The whole marketplace, a set of tasks, real auctions, a final table.

It starts the stack of `./sale.toml` (broker, Postgres, services, one process per agent; their
logs go to the run directory), waits until every configured agent is up, then posts the tasks
one at a time — the next when the previous task's outcome is in the Postgres log, so each
auction finds the memory of all the ones before it, outcomes included, whatever the timing (a
rerun with cached agents makes the same calls) — and prints each auction's story as it streams
by. When every task is done, it prints `sale report`'s table of those tasks and stops. Tasks
whose outcome is already in the log (a job run again, or resumed after an interruption) are
not posted again; the table still shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from marketplace.app.stack import running, stop_on_signals
from marketplace.log.lines import Kinds, Labels, labels_of, line, story
from marketplace.log.summary import run_report
from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import Config
from marketplace.shared.posting import Posting, publish_one
from schemas.events import (
    AgentHeartbeat,
    AuctionClosed,
    DeadLetter,
    Event,
    JuryCalled,
    TaskChecks,
    TaskOutcome,
)
from schemas.topics import STREAMS

AGENTS_UP_S = 600.0  # loading three models from a cold disk takes a while
RECORDED_S = 60.0
RATE_WINDOW = 10  # tasks: the time left is judged on the recent pace, not the whole run's


class Progress:
    """Follows the streams: prints each auction's steps and knows which tasks are done."""

    def __init__(self, agents: Sequence[str], tasks: int = 0) -> None:
        self.expected = set(agents)
        self.tasks = tasks
        self.started = time.monotonic()
        self.up: set[str] = set()
        self.all_up = asyncio.Event()
        self.outcomes: dict[str, TaskOutcome] = {}
        self.unawarded: set[str] = set()  # closed with no winner: no result, no outcome comes
        self.finished: list[float] = []
        self.cost: dict[str, float] = defaultdict(float)
        self.changed = asyncio.Event()
        self.labels: Labels = {}  # bid id → agent:round, as the bids stream by
        self.answered = Kinds()  # general and search tasks: their drafts are answers

    async def on_event(self, event: Event, source: Source) -> None:
        if line := self.line(event):
            print(line, flush=True)
        self.changed.set()

    def line(self, event: Event) -> str | None:
        """The event's line if it is a step of the story the job tells (`None` for the rest);
        follows which agents are up, what each task has cost and which are done."""
        self.labels.update(labels_of([event]))
        usage = getattr(event, "usage", None)
        if usage is not None and hasattr(event, "task_id"):
            self.cost[event.task_id] += usage.cost
        match event:
            case AgentHeartbeat(status="up") if event.agent_id not in self.up:
                self.up.add(event.agent_id)
                if self.expected <= self.up:
                    self.all_up.set()
            case TaskOutcome():
                self.outcomes[event.task_id] = event
                self.finished.append(time.monotonic())
                cost = self.cost[event.task_id]
                return f"{line(event, self.labels)}, cost {cost:.6f}{self.time_left()}"
            case AuctionClosed(winner_agent_id=None):
                self.unawarded.add(event.task_id)
                self.finished.append(time.monotonic())
            case AgentHeartbeat() | TaskChecks() | JuryCalled() | DeadLetter():
                return None
        return story(event, self.labels, self.answered(event))

    async def ended(self, task_id: str) -> str:
        """Waits for the task's end: its outcome, or an auction closed with no winner (no bids,
        refused). Returns the event type that ends it in the log."""
        while task_id not in self.outcomes and task_id not in self.unawarded:
            self.changed.clear()
            await self.changed.wait()
        return "TaskOutcome" if task_id in self.outcomes else "AuctionClosed"

    def time_left(self) -> str:
        done = len(self.outcomes) + len(self.unawarded)
        if not self.tasks or not done:
            return ""
        left = (self.tasks - done) * seconds_per_task([self.started, *self.finished])
        return f" ({done}/{self.tasks} done, about {left / 60:.0f} min left)"


def seconds_per_task(times: Sequence[float], window: int = RATE_WINDOW) -> float:
    """The recent pace: the start and each task's end time in, the mean of the last `window`
    gaps out. A resumed or cached run starts fast and then slows to the real pace."""
    recent = times[-(window + 1) :]
    return (recent[-1] - recent[0]) / (len(recent) - 1) if len(recent) > 1 else 0.0


async def drive(config: Config, postings: Sequence[Posting], database_url: str) -> str:
    """Posts the tasks one auction at a time and returns the report of them from the log."""
    progress = Progress([a.id for a in config.agents], len(postings))
    bus = Bus(config.broker, producer="client")
    bus.subscribe(list(STREAMS), "job", progress.on_event, from_start=False)
    async with bus:
        await bus.joined()
        print(f"waiting for agents: {', '.join(sorted(progress.expected))}", flush=True)
        try:
            await asyncio.wait_for(progress.all_up.wait(), AGENTS_UP_S)
        except TimeoutError:
            missing = ", ".join(sorted(progress.expected - progress.up))
            raise RuntimeError(f"agents not up after {AGENTS_UP_S:.0f}s: {missing}") from None
        conn = await asyncpg.connect(database_url)
        try:
            done = await done_tasks(conn)
            if skipped := [p.task.task_id for p in postings if p.task.task_id in done]:
                print(f"already done in this log, not posted again: {len(skipped)} task(s)")
            for posting in [p for p in postings if p.task.task_id not in done]:
                await publish_one(bus, posting)
                end = await progress.ended(posting.task.task_id)
                await recorded(conn, posting.task.task_id, end)
            task_ids = [p.task.task_id for p in postings]
            prices = {a.id: a.price for a in config.agents}
            return await run_report(conn, task_ids or None, prices=prices)  # none: whole log
        finally:
            await conn.close()


DONE = """
SELECT task_id FROM outcomes
UNION
SELECT task_id FROM events WHERE type = 'AuctionClosed' AND payload->>'winner_agent_id' IS NULL
"""


async def done_tasks(conn: asyncpg.Connection) -> set[str]:
    """The tasks that ended in the log (an outcome, or a close with no winner): a job run again
    (or resumed) does not post them (an id is a task's for good)."""
    with contextlib.suppress(asyncpg.UndefinedTableError):
        return {r["task_id"] for r in await conn.fetch(DONE)}
    return set()


async def recorded(conn: asyncpg.Connection, task_id: str, end: str = "TaskOutcome") -> None:
    """Returns once the recorder has the event that ended the task (`end`, its type) in
    Postgres, where the memory and the report read it."""
    query = "SELECT 1 FROM events WHERE task_id = $1 AND type = $2"
    deadline = time.monotonic() + RECORDED_S
    while time.monotonic() < deadline:
        with contextlib.suppress(asyncpg.UndefinedTableError):
            if await conn.fetchval(query, task_id, end):
                return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the recorder has not logged the end of {task_id} in {RECORDED_S:.0f}s")


async def run_job(
    config: Config, config_path: Path, postings: Sequence[Posting], run_dir: Path
) -> int:
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with running(config, config_path, run_dir, stop, quiet=True) as (bootstrap, url):
        job_config = config.model_copy(
            update={"broker": config.broker.model_copy(update={"bootstrap": bootstrap})}
        )
        job = asyncio.create_task(drive(job_config, postings, url))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([job, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not job.done():
            job.cancel()
            print("interrupted: the log keeps what was done; `sale report` shows it")
            return 130
        print("\n" + job.result(), flush=True)
    return 0
