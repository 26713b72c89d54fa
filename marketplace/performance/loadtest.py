"""`sale loadtest`: how many auctions per second the marketplace decides, LLM time excluded.

Scripted agents (deterministic, instant — for load tests only; `agent_hosts`) run the real
agent on a scripted model, so what is measured is the auction machinery: the broker, the
auctioneer (its own process, as deployed) and the agents' runtime (many agents to a process,
grouped by role: those the auction calls apart from those it never calls). `--mechanism`: the
lean auction (the default: it calls the cheapest agent for a draft) or the paper one (every
phase: bids, jury, refinement, second jury). For each agent count the load doubles until the
rate stops growing (saturation), then runs paced at half that rate for the award latency;
each row says the records written per auction on every topic and the CPU of each role.
Next to it, in the same run, the broker's raw produce→consume rate, for scale; under it the
summary table and its ratios (`load_report`).

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
from marketplace.performance import agent_hosts, load_report, trace
from marketplace.performance.agent_hosts import Host
from marketplace.performance.load_report import Measured
from marketplace.shared import children
from marketplace.shared.bus import Bus, Source, new_consumer
from marketplace.shared.config import AdmissionConfig, BrokerConfig
from marketplace.shared.extras import need
from marketplace.shared.kafka_auth import client_options
from marketplace.shared.keyfiles import run_keys
from marketplace.shared.local_broker import LocalBroker
from marketplace.shared.offsets import highwater_marks
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    CodingInputs,
    Event,
    Mechanism,
    TaskPosted,
)
from schemas.topics import STREAMS


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


@contextlib.contextmanager
def service_process(
    broker: BrokerConfig,
    workdir: Path,
    command: str = "auctioneer",
    window_s: float = 30,
    admission: str = "",
    log: Path | None = None,
    env: dict[str, str] | None = None,
    mechanism: Mechanism = "paper",
    args: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen]:
    """A service (`sale auctioneer`, `sale recorder`, `sale loadtest --host-agents`) as
    deployed, in its own process, stopped by SIGTERM on the way out (killed if it has not
    stopped in `children.STOP_WAIT_S`, and sent SIGTERM by the kernel should this process die
    first); `admission`: an [admission] table; `log`: where its log goes; `args`: the command's
    own."""
    config = workdir / "sale.toml"
    config.write_text(
        f'[broker]\ntopic_prefix = "{broker.topic_prefix}"\npartitions = {broker.partitions}\n'
        f"fetch_max_wait_ms = {broker.fetch_max_wait_ms}\ntrace = {str(broker.trace).lower()}\n"
        f'[auction]\nmechanism = "{mechanism}"\nbid_window_s = {window_s}\n'
        f"jury_window_s = {window_s}\n"
        f"refine_window_s = {window_s}\n[auction.weights]\ncost = 0.01\nentropy = 0.0\n" + admission
    )
    output = log.open("w") if log else subprocess.DEVNULL
    process = children.popen(
        [sys.executable, "-m", "marketplace.app.cli", "--config", str(config), command, *args],
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


# Starts the services a row measures against, in `workdir`, for an auction `mechanism`;
# yields their pids by name.
Services = Callable[[BrokerConfig, Path, Mechanism], AbstractAsyncContextManager[dict[str, int]]]


@contextlib.asynccontextmanager
async def one_auctioneer(
    broker: BrokerConfig, workdir: Path, mechanism: Mechanism
) -> AsyncIterator[dict[str, int]]:
    with service_process(broker, workdir, admission=UNBOUNDED, mechanism=mechanism) as process:
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
    """One measured load: the auctions' rate and award latency, the records written meanwhile
    on each topic of the run (stream → records), and each process's or role's CPU over the
    measured span (share of one core)."""

    rate: Rate
    auctions: int
    in_flight: int
    records: dict[str, int]
    cpu: dict[str, float]

    @property
    def messages_per_auction(self) -> float:
        return sum(self.records.values()) / self.auctions

    @property
    def messages_per_s(self) -> float:
        return self.rate.per_s * self.messages_per_auction

    def per_stream(self) -> str:
        """Records per auction on each topic that had any, the flow's order."""
        return ", ".join(
            f"{stream} {n / self.auctions:.1f}" for stream, n in self.records.items() if n
        )

    def __str__(self) -> str:
        cpu = " ".join(f"{name} {share:3.0f}%" for name, share in self.cpu.items())
        return (
            f"{self.rate}   {self.messages_per_s:6.0f} msg/s ({self.messages_per_auction:.1f}"
            f"/auction)   CPU {cpu}"
        )


class CpuMeter:
    """CPU seconds of named groups of processes between `start` and `shares` (psutil), as a
    share of one core: the broker, the auctioneer, the agents by role, this process (client)."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        psutil = need("psutil", "bench", "the load test's CPU shares")
        self.processes = {
            name: [psutil.Process(pid) for pid in group] for name, group in pids.items() if group
        }
        self.start()

    def start(self) -> None:
        self._since = time.perf_counter()
        self._before = {name: self._seconds(group) for name, group in self.processes.items()}

    @staticmethod
    def _seconds(group: list) -> float:
        return sum(t.user + t.system for t in (p.cpu_times() for p in group))

    def shares(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._since
        return {
            name: 100 * (self._seconds(group) - self._before[name]) / elapsed
            for name, group in self.processes.items()
        }


HOST_READY_S = 300.0  # for every agent of a process to join the broker
WARM_UP_S = 180.0  # the paper auction's four windows of 30 s, and a minute more


class RowFailed(RuntimeError):
    """A market that did not start: its row is said to have failed, the others go on."""


PROGRESS_S = 10.0  # how often a measurement says how far it is


class Market:
    """A market under measure: the services (`services`: an auctioneer by default), scripted
    agents in processes by role (`agent_hosts`), and a client that posts tasks and watches the
    auctions close. Measured as often as asked (`measure`) while it runs."""

    def __init__(
        self,
        broker: BrokerConfig,
        agents: int,
        mechanism: Mechanism = "lean",
        broker_pid: int | None = None,
        services: Services = one_auctioneer,
    ) -> None:
        self.broker = broker
        self.agents = agents
        self.mechanism = mechanism
        self.broker_pid = broker_pid
        self.services = services
        self.posted: dict[str, float] = {}
        self.closed: dict[str, float] = {}
        self.progress = asyncio.Condition()
        self.watcher = Bus(broker, producer="loadtest")
        self.watcher.subscribe(["auctions"], "loadtest-watch", self._on_closed, from_start=False)
        self.pids: dict[str, list[int]] = {}
        self._stack = contextlib.AsyncExitStack()

    async def _on_closed(self, event: Event, source: Source) -> None:
        if isinstance(event, AuctionClosed) and event.task_id in self.posted:
            async with self.progress:
                self.closed.setdefault(event.task_id, time.perf_counter())
                self.progress.notify_all()

    async def __aenter__(self) -> Market:
        stack = self._stack
        try:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            services = await stack.enter_async_context(
                self.services(self.broker, workdir, self.mechanism)
            )
            self.pids = {"broker": [self.broker_pid] if self.broker_pid else []}
            self.pids |= {name: [pid] for name, pid in services.items()}
            for host in agent_hosts.hosts(self.agents, self.mechanism):
                pid = await self._host(stack, workdir / host.label, host)
                self.pids.setdefault(f"{host.role} agents", []).append(pid)
            self.pids["client"] = [os.getpid()]
            await stack.enter_async_context(self.watcher)
            await self.watcher.joined()
            await self._warm_up()
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _host(self, stack: contextlib.AsyncExitStack, folder: Path, host: Host) -> int:
        """Starts one process of agents and waits until all of them have joined the broker."""
        folder.mkdir()
        log = folder / "agents.log"
        args = ("--host-agents", *map(str, host.agents), "--agent-counts", str(self.agents))
        process = stack.enter_context(
            service_process(
                self.broker,
                folder,
                "loadtest",
                log=log,
                mechanism=self.mechanism,
                args=(*args, "--mechanism", self.mechanism),
            )
        )
        deadline = time.monotonic() + HOST_READY_S
        while not (folder / "ready").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RowFailed(f"agents {host.label} did not start:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(0.2)
        return process.pid

    async def _warm_up(self) -> None:
        """One auction first: the auctioneer has started, joined and read the roster."""
        await post(self.watcher, "warm-up", self.posted)
        async with self.progress:
            try:
                await asyncio.wait_for(
                    self.progress.wait_for(lambda: "warm-up" in self.closed), WARM_UP_S
                )
            except TimeoutError:
                raise RowFailed(f"the warm-up auction did not close in {WARM_UP_S:.0f} s") from None

    async def measure(
        self,
        prefix: str,
        auctions: int,
        in_flight: int,
        pace_per_s: float | None = None,
        max_seconds: float | None = None,
    ) -> Row:
        """Up to `auctions` auctions (task ids `prefix` + a number), at most `in_flight` open at
        once (as the client holds them; the auctioneer's admission bound is lifted so it is the
        one in force), posted as fast as they close or, with `pace_per_s`, at that rate; with
        `max_seconds`, posting stops then and the auctions open are waited for."""
        self.posted.clear()
        self.closed.clear()
        before = await records_by_stream(self.broker)
        cpu = CpuMeter(self.pids)
        start = time.perf_counter()
        reporting = asyncio.create_task(self._report(prefix, auctions, start, max_seconds))
        try:
            for i in range(auctions):
                if pace_per_s:
                    await asyncio.sleep(max(0.0, start + i / pace_per_s - time.perf_counter()))
                async with self.progress:
                    await self.progress.wait_for(
                        lambda: len(self.posted) - len(self.closed) < in_flight
                    )
                if max_seconds and time.perf_counter() - start > max_seconds:
                    break  # checked once there is room: a slow row stops posting in time
                await post(self.watcher, f"{prefix}{i}", self.posted)
            async with self.progress:
                done = self.progress.wait_for(lambda: len(self.closed) == len(self.posted))
                await asyncio.wait_for(done, 900)
        finally:
            reporting.cancel()
        elapsed = time.perf_counter() - start
        shares = cpu.shares()
        await asyncio.sleep(SETTLE_S)  # the records an award causes (a result) are written
        after = await records_by_stream(self.broker)
        written = {stream: after[stream] - before.get(stream, 0) for stream in after}
        latencies = [self.closed[t] - self.posted[t] for t in self.posted]
        closed = len(latencies)
        return Row(rate(closed, elapsed, latencies), closed, in_flight, written, shares)

    async def _report(
        self, prefix: str, auctions: int, start: float, max_seconds: float | None
    ) -> None:
        """Every `PROGRESS_S`, on stderr: how many have closed, and about how long is left."""
        while True:
            await asyncio.sleep(PROGRESS_S)
            elapsed, done = time.perf_counter() - start, len(self.closed)
            left = time_left(auctions, done, len(self.posted), elapsed, max_seconds)
            print(
                f"    … {self.mechanism}, {self.agents} agents, {prefix}: {done}/{auctions} "
                f"closed in {elapsed:.0f} s, {left}",
                file=sys.stderr,
                flush=True,
            )


def time_left(
    auctions: int, done: int, posted: int, elapsed: float, max_seconds: float | None
) -> str:
    """About how long a measurement has left, at its pace so far: the auctions still to post
    (none once `max_seconds` have passed) and those open."""
    if not done:
        return "none closed yet"
    each = elapsed / done
    target = auctions
    if max_seconds:
        target = min(auctions, posted + int(max(0.0, max_seconds - elapsed) / each))
    return f"about {max(0, target - done) * each:.0f} s left"


SETTLE_S = 0.5


async def auction_rate(
    broker: BrokerConfig,
    agents: int,
    auctions: int,
    in_flight: int,
    pace_per_s: float | None = None,
    broker_pid: int | None = None,
    services: Services = one_auctioneer,
    mechanism: Mechanism = "lean",
) -> Row:
    """One measurement of a market of its own (`Market.measure`), task ids "lt-" + a number."""
    async with Market(broker, agents, mechanism, broker_pid, services) as running:
        return await running.measure("lt-", auctions, in_flight, pace_per_s)


async def records_by_stream(broker: BrokerConfig) -> dict[str, int]:
    """Records written so far on every topic under the run's prefix, by stream: those the
    marketplace names and any it adds, so a new topic is counted the day it lands."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, **client_options(broker))
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(broker.topic_prefix)]
    finally:
        await admin.close()
    marks = await highwater_marks(broker.bootstrap, topics)
    streams = dict.fromkeys(
        sorted((t.removeprefix(broker.topic_prefix) for t in topics), key=_flow_order), 0
    )
    for tp, mark in marks.items():
        streams[tp.topic.removeprefix(broker.topic_prefix)] += mark
    return streams


def _flow_order(stream: str) -> tuple[int, str]:
    """The marketplace's streams in the flow of an auction, then any other, by name."""
    known = list(STREAMS)
    return (known.index(stream) if stream in known else len(known), stream)


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
                agent = ScriptedAgent(
                    f"agent{i}",
                    price=agent_hosts.ladder(FLOOD_AGENTS)[i],
                    delay_s=FLOOD_AGENT_DELAY_S,
                )
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
ROW_SECONDS = 60.0


@dataclass(frozen=True)
class Load:
    """A sweep's settings: auctions per row (at least twice those in flight), the first and
    the last count in flight, and how long a row posts at most."""

    auctions: int
    in_flight: int
    max_in_flight: int = MAX_IN_FLIGHT
    row_seconds: float = ROW_SECONDS


QUICK = Load(auctions=20, in_flight=4, max_in_flight=8, row_seconds=20.0)


async def sweep(running: Market, load: Load) -> Measured:
    """Doubles the auctions in flight from `load.in_flight` until the rate stops growing (or
    `load.max_in_flight`), then runs at half the best rate, paced: the latency there is the one
    that matters. Returns the best row and the paced one."""
    best: Row | None = None
    in_flight = load.in_flight
    while in_flight <= load.max_in_flight:
        auctions = max(load.auctions, 2 * in_flight)
        row = await running.measure(f"lt-{in_flight}-", auctions, in_flight, None, load.row_seconds)
        print(f"  {f'{in_flight} in flight':<24} {row}", flush=True)
        saturated = best is not None and row.rate.per_s < best.rate.per_s * SATURATED
        if best is None or row.rate.per_s > best.rate.per_s:
            best = row
        if saturated:
            break
        in_flight *= 2
    half = best.rate.per_s / 2
    paced = await running.measure("lt-paced-", load.auctions, MAX_IN_FLIGHT, half, load.row_seconds)
    print(f"  {f'paced at {half:.1f}/s (half)':<24} {paced}", flush=True)
    print(f"  records per auction at saturation: {best.per_stream()}", flush=True)
    return Measured(running.mechanism, running.agents, best, paced)


async def main(agent_counts: list[int], mechanisms: list[Mechanism], load: Load) -> None:
    with contextlib.ExitStack() as stack:
        local = None if os.environ.get("KAFKA_BOOTSTRAP") else stack.enter_context(LocalBroker())
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP") or local.bootstrap
        pid = local.pid if local else None
        print(
            f"broker {bootstrap}; {os.cpu_count()} CPUs; {' and '.join(mechanisms)} auction; "
            f"at least {load.auctions} auctions per row, each posting for at most "
            f"{load.row_seconds:.0f} s; in flight from {load.in_flight} to at most "
            f"{load.max_in_flight}, doubling until auctions/s grows less than "
            f"{100 * (SATURATED - 1):.0f}%; award latency = post → close seen by the client "
            "(scripted agents: no time of their own, so all of it is beyond the agents' time); "
            "CPU in % of one core",
            flush=True,
        )
        print(load_report.METHOD, flush=True)
        raw = await raw_broker_rate(bootstrap)
        print(f"{'raw broker, 1 KiB records':<26} {raw}   (produce → consume)", flush=True)
        measured: list[Measured] = []
        began = time.monotonic()
        rows = [(m, n) for m in mechanisms for n in agent_counts]
        for done, (mechanism, count) in enumerate(rows):
            layout = agent_hosts.hosts(count, mechanism)
            print(
                f"{mechanism} auction, {count} scripted agents in {len(layout)} "
                f"process{'es' if len(layout) > 1 else ''} "
                f"(row {done + 1} of {len(rows)}, {(time.monotonic() - began) / 60:.1f} min so "
                f"far{_left(began, done, len(rows))}):",
                flush=True,
            )
            try:
                async with Market(market(bootstrap), count, mechanism, pid) as running:
                    measured.append(await sweep(running, load))
            except RowFailed as failed:
                print(f"  failed: {failed}", flush=True)
                continue
            print(
                f"  machinery at saturation: {measured[-1].best.messages_per_s:.0f} msg/s = "
                f"{100 * measured[-1].best.messages_per_s / raw.per_s:.1f}% of the raw broker rate",
                flush=True,
            )
        print(load_report.table(measured, raw.per_s), flush=True)


def _left(began: float, done: int, rows: int) -> str:
    """About how long the rows left take, at the pace of those done (a guess: later rows are
    larger)."""
    if not done:
        return ""
    return f", about {(time.monotonic() - began) / done * (rows - done) / 60:.0f} min left"


TRACE_ROWS = ((1, 30), (16, 300))  # (in flight, auctions): alone, then under load


async def traced(agents: int, mechanism: Mechanism) -> None:
    """Auctions with every record stamped, then where the time of each went (`bench.trace`)."""
    with contextlib.ExitStack() as stack:
        bootstrap = (
            os.environ.get("KAFKA_BOOTSTRAP") or stack.enter_context(LocalBroker()).bootstrap
        )
        print(
            f"broker {bootstrap}; {os.cpu_count()} CPUs; {agents} scripted agents; "
            f"{mechanism} auction",
            flush=True,
        )
        for in_flight, auctions in TRACE_ROWS:
            broker = market(bootstrap, trace=True)
            result = (
                await auction_rate(broker, agents, auctions, in_flight, mechanism=mechanism)
            ).rate
            records = await trace.read_back(broker)
            title = f"{in_flight} in flight: {result}   (award latency)"
            print(trace.report(records, [f"lt-{i}" for i in range(auctions)], title), flush=True)


def run(
    agent_counts: list[int],
    load: Load,
    flood_tasks: int = 0,
    rate: float = 900,
    tracing: bool = False,
    mechanisms: list[Mechanism] | None = None,
) -> int:
    """The auction rates; with `flood_tasks`, the flood's figures; with `tracing`, where an
    auction's time goes. Every event is signed and checked, as deployed, with keys made for
    the run."""
    mechanisms = mechanisms or ["lean"]
    agents = max([FLOOD_AGENTS, *agent_counts])
    if tracing:
        work = traced(agent_counts[0], mechanisms[0])
    elif flood_tasks:
        work = flood(flood_tasks, rate)
    else:
        work = main(agent_counts, mechanisms, load)
    with run_keys(principals(agents)):
        asyncio.run(work)
    return 0


def principals(agents: int) -> dict[str, str]:
    """Who signs in a load run (→ role): the auctioneer, the client and the scripted agents."""
    return {"auctioneer": "auctioneer", "loadtest": "client"} | {
        agent_hosts.name(i): "agent" for i in range(agents)
    }
