"""`sale loadtest`: how many auctions per second the marketplace decides, LLM time excluded.

Scripted agents (deterministic, instant — for load tests only) bid, judge and refine, so what is
measured is the auction machinery: the broker, the auctioneer (its own process, as deployed)
and the agents' runtime. Every auction runs every phase: bids, jury, refinement, second jury.
Next to it, in the same run, the broker's raw produce→consume rate, for scale.

`sale loadtest --flood N` instead posts N tasks at once, at `--rate` per second, to agents that
answer slower than that, once with the auctioneer's admission bound and once without it: how
many auctions closed with no bid, how many were open at most, and how long the flood took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from pathlib import Path
from statistics import quantiles

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.runtime import AgentService
from agents.scripted_agent import ScriptedAgent
from marketplace.performance import trace
from marketplace.shared import children
from marketplace.shared.bus import Bus, Source, new_consumer
from marketplace.shared.config import AdmissionConfig, BrokerConfig
from marketplace.shared.extras import need
from marketplace.shared.keyfiles import run_keys
from marketplace.shared.local_broker import LocalBroker
from marketplace.shared.offsets import highwater_marks
from schemas.events import AuctionClosed, AuctionOpened, CodingInputs, Event, TaskPosted
from schemas.topics import Topics

PRICES = (0.05, 0.09, 0.16, 0.36, 0.5, 0.7, 0.9, 1.2)


@dataclass(frozen=True)
class Rate:
    per_s: float
    p50_ms: float
    p99_ms: float

    def __str__(self) -> str:
        return f"{self.per_s:9.1f}/s   p50 {self.p50_ms:7.1f} ms   p99 {self.p99_ms:7.1f} ms"


def rate(count: int, seconds: float, latencies_s: list[float]) -> Rate:
    cuts = quantiles(latencies_s, n=100, method="inclusive")
    return Rate(count / seconds, cuts[49] * 1000, cuts[98] * 1000)


async def raw_broker_rate(bootstrap: str, messages: int = 5000, size: int = 1024) -> Rate:
    """Produce→consume through one topic, 1 KiB records, measured by a reader in this process."""
    topic = f"loadtest-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    consumer = new_consumer(bootstrap, topic, auto_offset_reset="earliest", fetch_max_wait_ms=10)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await consumer.start()
    await producer.start()
    padding = "x" * size
    latencies: list[float] = []
    try:
        start = time.perf_counter()

        async def produce() -> None:
            for i in range(messages):
                body = json.dumps({"t": time.perf_counter(), "pad": padding}).encode()
                await producer.send(topic, body, key=str(i).encode())
            await producer.flush()

        sending = asyncio.create_task(produce())
        while len(latencies) < messages:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                latencies += [now - json.loads(r.value)["t"] for r in records]
        await sending
        return rate(messages, time.perf_counter() - start, latencies)
    finally:
        await producer.stop()
        await consumer.stop()


def agents_for(count: int) -> list[ScriptedAgent]:
    """The dearest agent wins round 0; the cheapest refines and wins round 1: every phase runs."""
    names = [f"agent{i}" for i in range(count)]
    scores = {names[-1]: 5.0, f"{names[0]}:1": 5.0}
    return [
        ScriptedAgent(
            name,
            price=PRICES[i],
            scores=scores,
            default_score=1.0,
            refined_plan_tokens=50,
        )
        for i, name in enumerate(names)
    ]


@contextlib.contextmanager
def service_process(
    broker: BrokerConfig,
    workdir: Path,
    command: str = "auctioneer",
    window_s: float = 30,
    admission: str = "",
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen]:
    """A service (`sale auctioneer`, `sale recorder`) as deployed, in its own process, stopped
    by SIGTERM on the way out (killed if it has not stopped in `children.STOP_WAIT_S`, and sent
    SIGTERM by the kernel should this process die first); `admission`: an [admission] table;
    `log`: where its log goes."""
    config = workdir / "sale.toml"
    config.write_text(
        f'[broker]\ntopic_prefix = "{broker.topic_prefix}"\npartitions = {broker.partitions}\n'
        f"fetch_max_wait_ms = {broker.fetch_max_wait_ms}\ntrace = {str(broker.trace).lower()}\n"
        f'[auction]\nmechanism = "paper"\nbid_window_s = {window_s}\n'
        f"jury_window_s = {window_s}\n"
        f"refine_window_s = {window_s}\n[auction.weights]\ncost = 0.01\nentropy = 0.0\n" + admission
    )
    output = log.open("w") if log else subprocess.DEVNULL
    process = children.popen(
        [sys.executable, "-m", "marketplace.app.cli", "--config", str(config), command],
        env={**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap, **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:  # even on a failed step: it stops within 5 s, else it and its group are killed
        children.stop(process)
        if log:
            output.close()


# Starts the services a row measures against, in `workdir`; yields their pids by name.
Services = Callable[[BrokerConfig, Path], AbstractAsyncContextManager[dict[str, int]]]


@contextlib.asynccontextmanager
async def one_auctioneer(broker: BrokerConfig, workdir: Path) -> AsyncIterator[dict[str, int]]:
    with service_process(broker, workdir, admission=UNBOUNDED) as process:
        yield {"auctioneer": process.pid}


def market(bootstrap: str, trace: bool = False) -> BrokerConfig:
    """A fresh set of topics for one row; `trace`: every record stamped (`bench.trace`)."""
    return BrokerConfig(
        bootstrap=bootstrap,
        topic_prefix=f"lt{uuid.uuid4().hex[:8]}.",
        partitions=4,
        fetch_max_wait_ms=10,
        trace=trace,
    )


@dataclass(frozen=True)
class Row:
    """One load level: the auctions' rate and award latency, the records each auction wrote,
    and each process's CPU over the measured span (share of one core)."""

    rate: Rate
    messages_per_auction: float
    cpu: dict[str, float]

    @property
    def messages_per_s(self) -> float:
        return self.rate.per_s * self.messages_per_auction

    def __str__(self) -> str:
        cpu = " ".join(f"{name} {share:3.0f}%" for name, share in self.cpu.items())
        return (
            f"{self.rate}   {self.messages_per_s:6.0f} msg/s ({self.messages_per_auction:.1f}"
            f"/auction)   CPU {cpu}"
        )


class CpuMeter:
    """CPU seconds of named processes between `start` and `shares` (psutil), as a share of one
    core: the broker, the auctioneer, and this process (agents, watcher and client)."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        psutil = need("psutil", "bench", "the load test's CPU shares")
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items() if pid}
        self.start()

    def start(self) -> None:
        self._since = time.perf_counter()
        self._before = {name: self._seconds(p) for name, p in self.processes.items()}

    @staticmethod
    def _seconds(process: object) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def shares(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._since
        return {
            name: 100 * (self._seconds(p) - self._before[name]) / elapsed
            for name, p in self.processes.items()
        }


async def auction_rate(
    broker: BrokerConfig,
    agents: int,
    auctions: int,
    in_flight: int,
    pace_per_s: float | None = None,
    broker_pid: int | None = None,
    services: Services = one_auctioneer,
) -> Row:
    """`auctions` auctions among `agents` scripted agents, at most `in_flight` open at once
    (as the client holds them; the auctioneer's admission bound is lifted so it is the one in
    force), posted as fast as they close or, with `pace_per_s`, at that rate."""
    closed: dict[str, float] = {}
    posted: dict[str, float] = {}
    progress = asyncio.Condition()

    async def on_closed(event: Event, source: Source) -> None:
        if isinstance(event, AuctionClosed) and event.task_id in posted:
            async with progress:
                closed.setdefault(event.task_id, time.perf_counter())
                progress.notify_all()

    watcher = Bus(broker, producer="loadtest")
    watcher.subscribe(["auctions"], "loadtest-watch", on_closed, from_start=False)
    with tempfile.TemporaryDirectory() as workdir:
        async with (
            services(broker, Path(workdir)) as pids,
            contextlib.AsyncExitStack() as stack,
        ):
            await stack.enter_async_context(watcher)
            await watcher.joined()
            for agent in agents_for(agents):
                service = AgentService(agent, Bus(broker, producer=agent.agent_id))
                await stack.enter_async_context(service)
                await service.bus.joined()
            await warm_up(watcher, posted, closed, progress)
            posted.clear()
            closed.clear()
            cpu = CpuMeter({"broker": broker_pid, **pids, "agents+client": os.getpid()})
            start = time.perf_counter()
            for i in range(auctions):
                if pace_per_s:
                    await asyncio.sleep(max(0.0, start + i / pace_per_s - time.perf_counter()))
                async with progress:
                    await progress.wait_for(lambda: len(posted) - len(closed) < in_flight)
                await post(watcher, f"lt-{i}", posted)
            async with progress:
                await asyncio.wait_for(progress.wait_for(lambda: len(closed) == auctions), 600)
            elapsed = time.perf_counter() - start
            shares = cpu.shares()
    latencies = [closed[t] - posted[t] for t in posted]
    written = await records_written(broker)
    return Row(rate(auctions, elapsed, latencies), written / (auctions + 1), shares)


async def records_written(broker: BrokerConfig) -> int:
    """Records on the task-scoped streams of a row's topics (the warm-up's included)."""
    topics = Topics(broker.topic_prefix)
    names = [getattr(topics, s) for s in ("tasks", "bids", "reviews", "auctions", "results")]
    return sum((await highwater_marks(broker.bootstrap, names)).values())


async def post(bus: Bus, task_id: str, posted: dict[str, float]) -> None:
    task = TaskPosted(
        producer="loadtest",
        task_id=task_id,
        kind="coding",
        prompt="def f(): ...",
        inputs=CodingInputs(entry_point="f", examples=["assert f(1) == 2"]),
    )
    posted[task_id] = time.perf_counter()
    await bus.publish(task)


async def warm_up(bus: Bus, posted: dict, closed: dict, progress: asyncio.Condition) -> None:
    """One auction first: the auctioneer has started, joined and read the roster."""
    await post(bus, "warm-up", posted)
    async with progress:
        await asyncio.wait_for(progress.wait_for(lambda: "warm-up" in closed), 120)


# --- a flood of tasks ------------------------------------------------------------------------

FLOOD_AGENTS = 3
FLOOD_AGENT_DELAY_S = 0.005  # per event: with a commit each, the agents keep up with ~100 tasks/s
FLOOD_WINDOW_S = 5.0
UNBOUNDED = "[admission]\nopen_per_agent = 1000\nmax_open = 100000\n"


@dataclass(frozen=True)
class Flood:
    posted: int
    bidless: int
    most_open: int
    seconds: float  # from the first post to the last close
    p50_s: float  # post → close
    p99_s: float

    def __str__(self) -> str:
        share = 100 * self.bidless / self.posted
        return (
            f"{self.bidless:6d} closed with no bid ({share:4.1f}%)   at most {self.most_open:5d} "
            f"open   all closed in {self.seconds:6.1f} s   p50 {self.p50_s:6.1f} s"
            f"   p99 {self.p99_s:6.1f} s   (post → close)"
        )


class FloodWatch:
    """What the auctions stream says of a flood: opens and closes by task, by the auctioneer's
    clock, and when each close was seen."""

    def __init__(self) -> None:
        self.opened: dict[str, datetime] = {}
        self.closed: dict[str, AuctionClosed] = {}
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def __call__(self, event: Event, source: Source) -> None:
        if isinstance(event, AuctionOpened):
            self.opened.setdefault(event.task_id, event.occurred_at)
        elif isinstance(event, AuctionClosed) and event.task_id not in self.closed:
            self.closed[event.task_id] = event
            self.seen[event.task_id] = time.perf_counter()
            self.changed.set()

    def most_open(self) -> int:
        """The most auctions open at one time (a close first on a tie: it frees the room)."""
        moments = sorted(
            [(e.occurred_at, 0, -1) for e in self.closed.values()]
            + [(at, 1, +1) for at in self.opened.values()]
        )
        return max(accumulate(change for _, _, change in moments), default=0)


async def flood_row(bootstrap: str, tasks: int, rate_per_s: float, admission: str) -> Flood:
    broker = BrokerConfig(
        bootstrap=bootstrap, topic_prefix=f"fl{uuid.uuid4().hex[:8]}.", fetch_max_wait_ms=10
    )
    watch = FloodWatch()
    watcher = Bus(broker, producer="loadtest")
    watcher.subscribe(["auctions"], "loadtest-watch", watch, from_start=False)
    with (
        tempfile.TemporaryDirectory() as workdir,
        service_process(broker, Path(workdir), window_s=FLOOD_WINDOW_S, admission=admission),
    ):
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(watcher)
            await watcher.joined()
            for i in range(FLOOD_AGENTS):
                agent = ScriptedAgent(f"agent{i}", price=PRICES[i], delay_s=FLOOD_AGENT_DELAY_S)
                service = AgentService(agent, Bus(broker, producer=agent.agent_id))
                await stack.enter_async_context(service)
                await service.bus.joined()
            posted: dict[str, float] = {}
            await post(watcher, "warm-up", posted)
            while "warm-up" not in watch.closed:
                await asyncio.wait_for(watch.changed.wait(), 120)
                watch.changed.clear()
            posted.clear()
            start = time.perf_counter()
            for i in range(tasks):
                await asyncio.sleep(max(0.0, start + i / rate_per_s - time.perf_counter()))
                await post(watcher, f"flood-{i}", posted)
            while len(set(posted) & set(watch.closed)) < tasks:
                await asyncio.wait_for(watch.changed.wait(), 900)
                watch.changed.clear()
    closes = [watch.closed[t] for t in posted]
    cuts = quantiles([watch.seen[t] - posted[t] for t in posted], n=100, method="inclusive")
    return Flood(
        posted=tasks,
        bidless=sum(not c.bids for c in closes),
        most_open=watch.most_open(),
        seconds=max(watch.seen[t] for t in posted) - start,
        p50_s=cuts[49],
        p99_s=cuts[98],
    )


async def flood(tasks: int, rate_per_s: float) -> None:
    with contextlib.ExitStack() as stack:
        bootstrap = (
            os.environ.get("KAFKA_BOOTSTRAP") or stack.enter_context(LocalBroker()).bootstrap
        )
        print(
            f"broker {bootstrap}; {os.cpu_count()} CPUs; a flood of {tasks} tasks at "
            f"{rate_per_s:.0f}/s to {FLOOD_AGENTS} scripted agents answering each event after "
            f"{FLOOD_AGENT_DELAY_S * 1000:.0f} ms; paper auction, {FLOOD_WINDOW_S:.0f} s windows",
            flush=True,
        )
        defaults = AdmissionConfig()
        rows = [
            ("no admission bound", UNBOUNDED),
            (f"[admission] defaults ({defaults.open_per_agent}/agent)", ""),
        ]
        for name, admission in rows:
            print(
                f"{name:<34} {await flood_row(bootstrap, tasks, rate_per_s, admission)}", flush=True
            )


SATURATED = 1.10  # a doubling of the load that adds less than 10% auctions/s: saturation
MAX_IN_FLIGHT = 1024


@dataclass(frozen=True)
class Load:
    """A sweep's settings: auctions per row (at least twice those in flight), and the first
    and the last count in flight."""

    auctions: int
    in_flight: int
    max_in_flight: int = MAX_IN_FLIGHT


async def sweep(bootstrap: str, agents: int, load: Load, pid: int | None) -> Row:
    """Doubles the auctions in flight from `load.in_flight` until the rate stops growing (or
    `load.max_in_flight`), then runs at half the best rate, paced: the latency there is the one
    that matters. Returns the best row."""
    best: Row | None = None
    in_flight = load.in_flight
    while in_flight <= load.max_in_flight:
        auctions = max(load.auctions, 2 * in_flight)
        row = await auction_rate(market(bootstrap), agents, auctions, in_flight, broker_pid=pid)
        print(f"  {f'{in_flight} in flight':<24} {row}", flush=True)
        saturated = best is not None and row.rate.per_s < best.rate.per_s * SATURATED
        if best is None or row.rate.per_s > best.rate.per_s:
            best = row
        if saturated:
            break
        in_flight *= 2
    half = best.rate.per_s / 2
    paced = await auction_rate(
        market(bootstrap), agents, load.auctions, MAX_IN_FLIGHT, pace_per_s=half, broker_pid=pid
    )
    print(f"  {f'paced at {half:.1f}/s (half)':<24} {paced}", flush=True)
    return best


async def main(agent_counts: list[int], load: Load) -> None:
    with contextlib.ExitStack() as stack:
        local = None if os.environ.get("KAFKA_BOOTSTRAP") else stack.enter_context(LocalBroker())
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP") or local.bootstrap
        pid = local.pid if local else None
        print(
            f"broker {bootstrap}; {os.cpu_count()} CPUs; at least {load.auctions} auctions per "
            f"row; in flight from {load.in_flight} to at most {load.max_in_flight}, doubling "
            "until auctions/s grows less than "
            f"{100 * (SATURATED - 1):.0f}%; award latency = post → close seen by the client "
            "(scripted agents: no time of their own); CPU in % of one core",
            flush=True,
        )
        raw = await raw_broker_rate(bootstrap)
        print(f"{'raw broker, 1 KiB records':<26} {raw}   (produce → consume)", flush=True)
        for count in agent_counts:
            print(f"auctions, {count} scripted agents:", flush=True)
            best = await sweep(bootstrap, count, load, pid)
            print(
                f"  machinery at saturation: {best.messages_per_s:.0f} msg/s = "
                f"{100 * best.messages_per_s / raw.per_s:.1f}% of the raw broker rate",
                flush=True,
            )


TRACE_ROWS = ((1, 30), (16, 300))  # (in flight, auctions): alone, then under load


async def traced(agents: int) -> None:
    """Auctions with every record stamped, then where the time of each went (`bench.trace`)."""
    with contextlib.ExitStack() as stack:
        bootstrap = (
            os.environ.get("KAFKA_BOOTSTRAP") or stack.enter_context(LocalBroker()).bootstrap
        )
        print(f"broker {bootstrap}; {os.cpu_count()} CPUs; {agents} scripted agents", flush=True)
        for in_flight, auctions in TRACE_ROWS:
            broker = market(bootstrap, trace=True)
            result = (await auction_rate(broker, agents, auctions, in_flight)).rate
            records = await trace.read_back(broker)
            title = f"{in_flight} in flight: {result}   (award latency)"
            print(trace.report(records, [f"lt-{i}" for i in range(auctions)], title), flush=True)


def run(
    agent_counts: list[int],
    load: Load,
    flood_tasks: int = 0,
    rate: float = 900,
    tracing: bool = False,
) -> int:
    """The auction rates; with `flood_tasks`, the flood's figures; with `tracing`, where an
    auction's time goes. Every event is signed and checked, as deployed, with keys made for
    the run."""
    agents = max([FLOOD_AGENTS, *agent_counts])
    if tracing:
        work = traced(agent_counts[0])
    elif flood_tasks:
        work = flood(flood_tasks, rate)
    else:
        work = main(agent_counts, load)
    with run_keys(principals(agents)):
        asyncio.run(work)
    return 0


def principals(agents: int) -> dict[str, str]:
    """Who signs in a load run (→ role): the auctioneer, the client and the scripted agents."""
    return {"auctioneer": "auctioneer", "loadtest": "client"} | {
        f"agent{i}": "agent" for i in range(agents)
    }
