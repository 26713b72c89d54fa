"""Clean stops: every service, run as a user runs it (`python -m marketplace.app.cli ...`), ends
within 5 s of SIGTERM with exit code 0 — under load, with auctions open, and with its broker
gone — and nothing a run starts outlives it, even when what started it is killed -9.

The bound and what each service commits on the way out: docs/failure.md, "Stops"."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from agents.runtime import AgentService
from agents.scripted_agent import ScriptedAgent
from marketplace.shared import children
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig
from marketplace.shared.keyfiles import ensure_keys
from marketplace.shared.local_broker import LocalBroker, free_port
from schemas.events import (
    CodingChecks,
    CodingInputs,
    Event,
    TaskChecks,
    TaskPosted,
    TaskResult,
)

pytestmark = pytest.mark.integration

STOP_S = 5.0  # the promise: SIGTERM → gone
READY_S = 60.0
SALE = [sys.executable, "-m", "marketplace.app.cli"]
# What each service logs once it is working (its bus started, its group joined or joining).
READY = {
    "auctioneer": "roster read",
    "recorder": "recording every stream",
    "verifier": "verifying in group",
    "monitor": "serving",
    "agent": "serving",
}


def config_text(broker: BrokerConfig, database_url: str = "") -> str:
    """The services' config: the paper mechanism with 30 s windows (auctions stay open), a
    scripted agent `llm`, and the test's database for the recorder."""
    database = f'[database]\nurl = "{database_url}"\n' if database_url else ""
    return (
        f'[broker]\ntopic_prefix = "{broker.topic_prefix}"\npartitions = {broker.partitions}\n'
        "fetch_max_wait_ms = 10\nsession_timeout_ms = 2000\nheartbeat_interval_ms = 300\n"
        '[auction]\nmechanism = "paper"\nbid_window_s = 30\njury_window_s = 30\n'
        "refine_window_s = 30\nheartbeat_ttl_s = 30\n" + database + '[[agents]]\nid = "llm"\n'
        'backend = "scripted"\nmodel = "scripted"\ninput_price = 0.01\noutput_price = 0.01\n'
        'executor = "chat"\n'
    )


class Service:
    """One `sale <service>` process, its log in a file."""

    def __init__(self, name: str, broker: BrokerConfig, tmp_path: Path, database: str = "") -> None:
        self.name = name
        self.log = tmp_path / f"{name}.log"
        config = tmp_path / f"{name}.toml"
        config.write_text(config_text(broker, database))
        argv = [*SALE, "--config", str(config), name, *(["--id", "llm"] if name == "agent" else [])]
        with self.log.open("w") as out:
            self.process = children.popen(
                argv,
                env={**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text()

    async def ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while READY[self.name] not in self.output():
            assert self.process.poll() is None, f"{self.name} exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.output()}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # its group joined, its first fetches made

    async def sigterm(self) -> float:
        """SIGTERM, then how long until it exited (waited for without blocking the loop, so
        the load of this process goes on meanwhile)."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        while self.process.poll() is None and time.monotonic() - start < 3 * STOP_S:
            await asyncio.sleep(0.02)
        return time.monotonic() - start

    def assert_stopped_within_bound(self, took: float) -> None:
        assert self.process.returncode is not None, f"still running:\n{self.output()}"
        assert took < STOP_S, f"{self.name} took {took:.1f} s:\n{self.output()}"
        assert self.process.returncode == 0, self.output()

    def kill(self) -> None:
        if self.process.poll() is None:
            children.kill_group(self.process.pid)
            self.process.wait()


@contextlib.asynccontextmanager
async def service(
    name: str, broker: BrokerConfig, tmp_path: Path, database: str = ""
) -> AsyncIterator[Service]:
    started = Service(name, broker, tmp_path, database)
    try:
        yield started
    finally:
        started.kill()


def coding_task(task_id: str) -> TaskPosted:
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt="def add(a, b): ...",
        inputs=CodingInputs(entry_point="add"),
    )


def load_for(name: str) -> Callable[[int], list[Event]]:
    """What keeps each service busy: tasks (auctions, bids, the monitor's lines, the recorder's
    batches) and, for the verifier, results whose checks run for 20 s in the sandbox."""

    def tasks(i: int) -> list[Event]:
        return [coding_task(f"load-{uuid.uuid4().hex[:8]}-{i}")]

    def slow_checks(i: int) -> list[Event]:
        task_id = f"slow-{uuid.uuid4().hex[:8]}-{i}"
        checks = CodingChecks(entry_point="add", tests="import time\ntime.sleep(20)\n")
        return [
            TaskChecks(producer="client", task_id=task_id, checks=checks),
            TaskResult(
                producer="small",
                task_id=task_id,
                agent_id="small",
                bid_id=uuid.uuid4(),
                output="def add(a, b):\n    return a + b\n",
            ),
        ]

    return slow_checks if name == "verifier" else tasks


async def flood(bus: Bus, events: Callable[[int], list[Event]], per_s: float = 100) -> None:
    """Publishes events at about `per_s` until cancelled; a broker that refuses (it was
    stopped) is tried again."""
    i = 0
    while True:
        with contextlib.suppress(Exception):
            for event in events(i):
                await bus.send(event)
        i += 1
        await asyncio.sleep(1 / per_s)


@pytest.fixture
def agent_key() -> None:
    """`sale agent --id llm` signs with a key of its own."""
    key_dir, keyring = Path(os.environ["SALE_KEY_DIR"]), Path(os.environ["SALE_KEYRING"])
    ensure_keys({"llm": "agent"}, key_dir, keyring)


@pytest.mark.parametrize("name", list(READY))
async def test_a_service_under_load_with_auctions_open_stops_within_5_s_of_sigterm(
    name: str,
    broker_config: BrokerConfig,
    topics: object,
    tmp_path: Path,
    fresh_database: str,
    agent_key: None,
) -> None:
    """A bidding agent in this process keeps auctions open (30 s windows) while tasks flow in
    at 100/s; the service is told to stop in the middle of it."""
    database = fresh_database if name == "recorder" else ""
    bidder = AgentService(ScriptedAgent("bidder", price=1.0), Bus(broker_config, "bidder"))
    async with bidder, Bus(broker_config, "client") as client:
        await bidder.bus.joined()
        async with service(name, broker_config, tmp_path, database) as running:
            await running.ready()
            load = asyncio.create_task(flood(client, load_for(name)))
            try:
                await asyncio.sleep(3.0)  # auctions open, records in flight, checks running
                took = await running.sigterm()
            finally:
                load.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await load
            running.assert_stopped_within_bound(took)
            assert "stopped" in running.output()


@pytest.mark.parametrize("name", list(READY))
async def test_a_service_whose_broker_is_gone_stops_within_5_s_of_sigterm(
    name: str, tmp_path: Path, fresh_database: str, agent_key: None
) -> None:
    """Its own broker, stopped under it while tasks were flowing: every commit, goodbye and
    flush of its way out waits on a broker that will not answer, each within its bound."""
    database = fresh_database if name == "recorder" else ""
    with LocalBroker(port=free_port(), log_path=tmp_path / "tansu.log") as own:
        broker = BrokerConfig(
            bootstrap=own.bootstrap,
            topic_prefix=f"gone{uuid.uuid4().hex[:6]}.",
            partitions=2,
            fetch_max_wait_ms=10,
            session_timeout_ms=2000,
            heartbeat_interval_ms=300,
        )
        async with service(name, broker, tmp_path, database) as running:
            await running.ready()
            async with Bus(broker, "client") as client:
                for i in range(20):
                    for event in load_for(name)(i):
                        await client.send(event)
                await asyncio.sleep(1.0)
                own.stop()
            await asyncio.sleep(1.0)  # it has noticed: fetches and heartbeats fail
            took = await running.sigterm()
            running.assert_stopped_within_bound(took)


def test_a_second_sigterm_ends_a_service_at_once(
    broker_config: BrokerConfig, topics: object, tmp_path: Path
) -> None:
    """The first SIGTERM starts the bounded stop; one more ends the process there and then
    (here mid-start, the only moment a stop takes long), with 128 + the signal's number."""
    running = Service("auctioneer", broker_config, tmp_path)
    try:
        deadline = time.monotonic() + READY_S
        while "serving" not in running.output():
            assert time.monotonic() < deadline, running.output()
            time.sleep(0.05)
        running.process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        start = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        code = running.process.wait(timeout=STOP_S)
        assert time.monotonic() - start < 1.0
        assert code == 128 + signal.SIGTERM, running.output()
    finally:
        running.kill()


# --- sale serve and sale up --------------------------------------------------------------------


async def test_sale_serve_with_a_request_open_stops_within_5_s_of_sigterm(
    broker_config: BrokerConfig, topics: object, tmp_path: Path
) -> None:
    """A chat completion waits for its task's outcome (no agent: none comes); SIGTERM cuts it
    and the door is gone within the bound, exit code 0."""
    import httpx2

    port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(
        config_text(broker_config)
        + f'[serve]\nport = {port}\ntimeout_s = 120\n[serve.keys]\nacme = "ACME_KEY"\n'
    )
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = children.popen(
            [*SALE, "--config", str(config), "serve"],
            env={**os.environ, "KAFKA_BOOTSTRAP": broker_config.bootstrap, "ACME_KEY": "sk-a"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient(timeout=130) as http:
            deadline = time.monotonic() + READY_S
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                with contextlib.suppress(httpx2.TransportError):
                    if (await http.get(f"{base}/health")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
            asking = asyncio.create_task(
                http.post(
                    f"{base}/v1/chat/completions",
                    headers={"Authorization": "Bearer sk-a"},
                    json={"model": "sale", "messages": [{"role": "user", "content": "hi"}]},
                )
            )
            await asyncio.sleep(2.0)
            assert not asking.done()
            start = time.monotonic()
            process.send_signal(signal.SIGTERM)
            while process.poll() is None and time.monotonic() - start < 3 * STOP_S:
                await asyncio.sleep(0.02)
            took = time.monotonic() - start
            asking.cancel()
            with contextlib.suppress(BaseException):
                await asking
        assert took < STOP_S, log.read_text()
        assert process.returncode == 0, log.read_text()
    finally:
        if process.poll() is None:
            children.kill_group(process.pid)
            process.wait()


UP_CHILDREN_S = 5.0  # `sale up`'s services: each one's bound, all stopped at once
UP_S = 9.0  # `sale up` itself: its services, then Postgres and the broker it started


def test_sale_up_stops_within_its_bound_and_leaves_no_process(tmp_path: Path) -> None:
    """SIGTERM to `sale up` running every service and an agent on its own broker and Postgres:
    the services are gone within 5 s, `up` within `UP_S`, and no process of it is left."""
    from tests.integration.test_stack import CLEAN_ENV, Up, postmaster_pid, write_config

    data_dir = tmp_path / "pg"
    config = write_config(
        tmp_path / "sale.toml",
        f"ups{uuid.uuid4().hex[:6]}.",
        data_dir,
        services='["monitor", "auctioneer", "recorder", "verifier"]',
    )
    with config.open("a") as more:
        more.write(
            textwrap.dedent("""
                [[agents]]
                id = "llm"
                backend = "scripted"
                model = "scripted"
                input_price = 0.01
                output_price = 0.01
                executor = "chat"
            """)
        )
    up = Up(config, CLEAN_ENV, tmp_path / "run")
    try:
        up.wait_for("sale up: ready", timeout_s=120)
        for name in ("monitor", "auctioneer", "recorder", "verifier", "agent.llm"):
            if f"[{name}]" not in "".join(up.lines):  # lines already read are not seen again
                up.wait_for(f"[{name}]", timeout_s=60)
        time.sleep(3.0)  # each of them joined and working
        descendants = up.descendants()
        pg_pid = postmaster_pid(data_dir)
        services = [p for p in descendants if "marketplace.app.cli" in " ".join(p.cmdline())]
        assert len(services) == 5, [p.cmdline() for p in descendants]
        start = time.monotonic()
        up.process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(services, timeout=UP_CHILDREN_S)
        assert alive == [], f"services left after {UP_CHILDREN_S} s: {alive}"
        code = up.process.wait(timeout=UP_S)
        took = time.monotonic() - start
        up.lines.append(up.process.stdout.read())
        assert code == 0, "".join(up.lines)
        assert took < UP_S, "".join(up.lines)
        assert "did not stop within" not in "".join(up.lines)  # each stopped on its own
        _, alive = psutil.wait_procs(descendants, timeout=1)
        assert alive == [], f"left behind: {alive}"
        assert not _running(pg_pid)
    finally:
        up.kill()


def _running(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


# --- nothing outlives what started it ----------------------------------------------------------


PARENT = """
import os, subprocess, sys, time
from pathlib import Path
from marketplace.performance.loadtest import service_process
from marketplace.shared.config import BrokerConfig
from marketplace.shared.local_broker import LocalBroker

workdir = Path(sys.argv[1])
with LocalBroker() as broker:
    config = BrokerConfig(bootstrap=broker.bootstrap, topic_prefix="orphan.", partitions=2)
    with service_process(config, workdir, log=workdir / "auctioneer.log") as auctioneer:
        plain = subprocess.Popen(  # as a test starts a service: no helper, only the environment
            [sys.executable, "-m", "marketplace.app.cli", "monitor"],
            env={**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap},
            stdout=open(workdir / "monitor.log", "w"), stderr=subprocess.STDOUT,
        )
        print(broker.pid, auctioneer.pid, plain.pid, flush=True)
        time.sleep(600)
"""


def test_killing_a_load_test_leaves_none_of_its_processes(tmp_path: Path) -> None:
    """kill -9 of a process that started a broker and services the load test's way (and one
    the way a test does, `SALE_EXIT_WITH_PARENT` in its environment): each is gone within the
    bound of its stop, with no one to stop it."""
    env = {**os.environ, children.EXIT_WITH_PARENT: "1"}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 3, "the parent did not start its children"
        time.sleep(4.0)  # the services are up and serving
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + STOP_S + 1
        alive = pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [pid for pid in pids if _running(pid)]
        assert alive == [], f"left running after their parent was killed: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
