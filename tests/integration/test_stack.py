"""`sale up` and `sale topics` as a user runs them: real processes, real broker, real Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import BrokerConfig, SecurityConfig
from marketplace.shared.keyfiles import trust_of
from marketplace.shared.local_broker import wait_for_port
from schemas.events import Event
from schemas.topics import Topics
from tests.samples import every_event

SALE = [sys.executable, "-m", "marketplace.app.cli"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL")}


def write_config(path: Path, prefix: str, data_dir: Path, services: str = '["monitor"]') -> Path:
    path.write_text(
        f'[broker]\ntopic_prefix = "{prefix}"\npartitions = 2\n'
        f"session_timeout_ms = 2000\nheartbeat_interval_ms = 300\nfetch_max_wait_ms = 10\n"
        f'[database]\ndata_dir = "{data_dir}"\n'
        f"[stack]\nservices = {services}\n"
    )
    return path


class Up:
    """A `sale up` process whose output can be awaited line by line."""

    def __init__(self, config: Path, env: dict[str, str], run_dir: Path) -> None:
        self.process = subprocess.Popen(
            [*SALE, "--config", str(config), "up", "--run-dir", str(run_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: `kill` reaches every child
        )
        self.lines: list[str] = []

    def wait_for(self, fragment: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                break
            self.lines.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"{fragment!r} not seen; output:\n{''.join(self.lines)}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def kill(self) -> None:
        """Leaves nothing behind after a failed test: the broker and services it started
        (its descendants, and anything else of its process group), then `sale up` itself."""
        if self.process.poll() is None:
            for child in self.descendants():
                child.kill()
            self.process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        out, _ = self.process.communicate(timeout=60)
        self.lines.append(out)
        return self.process.returncode


@pytest.fixture
def up_factory(tmp_path: Path) -> Iterator:
    started: list[Up] = []

    def start(config: Path, env: dict[str, str]) -> Up:
        up = Up(config, env, tmp_path / "run")
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill()


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


async def test_up_starts_broker_postgres_and_services_then_stops_all_of_them(
    tmp_path: Path, up_factory
) -> None:
    data_dir = tmp_path / "pg"
    config = write_config(tmp_path / "sale.toml", "up.", data_dir)
    up = up_factory(config, CLEAN_ENV)
    ready = up.wait_for("sale up: ready")
    bootstrap = ready.split("broker ")[1].split(",")[0]
    up.wait_for("[monitor]")
    children = up.descendants()
    names = {" ".join(p.cmdline()) for p in children}
    assert any("tansu" in n for n in names), names
    assert any("marketplace.app.cli monitor" in n for n in names), names
    pg_pid = postmaster_pid(data_dir)
    assert psutil.pid_exists(pg_pid)

    # The monitor service is live: an event the stack's client key signs, published now,
    # shows up in its output (one signed by a key the stack does not know would be refused).
    broker = BrokerConfig(bootstrap=bootstrap, topic_prefix="up.", partitions=2)
    keys = tmp_path / "run" / "keys"
    trust = trust_of(SecurityConfig(keyring=keys / "keyring.toml", key_dir=keys))
    async with Bus(broker, producer="client", trust=trust) as bus:
        await asyncio.sleep(1.5)  # the monitor reads from "now": let it join its group first
        await bus.publish(every_event(task_id="seen-by-monitor")[0])
    up.wait_for("seen-by-monitor", timeout_s=20)

    assert up.stop(signal.SIGTERM) == 0
    output = "".join(up.lines)
    assert "sale up: stopped" in output
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {alive}"
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pg_pid) and psutil.Process(pg_pid).status() != "zombie":
        assert time.monotonic() < deadline, "embedded Postgres still running"
        time.sleep(0.1)


def test_up_uses_the_given_broker_and_database_and_leaves_them_running(
    tmp_path: Path, up_factory, kafka_bootstrap: str, database_server: str
) -> None:
    config = write_config(tmp_path / "sale.toml", "given.", tmp_path / "unused", services="[]")
    env = {**CLEAN_ENV, "KAFKA_BOOTSTRAP": kafka_bootstrap, "DATABASE_URL": database_server}
    up = up_factory(config, env)
    ready = up.wait_for("sale up: ready")
    assert f"broker {kafka_bootstrap}" in ready
    assert up.descendants() == []  # nothing of its own to start
    assert up.stop(signal.SIGINT) == 0
    host, port = kafka_bootstrap.split(":")
    wait_for_port(host, int(port), timeout_s=1)  # the broker we did not start still serves
    assert not (tmp_path / "unused").exists()


def test_up_restarts_a_service_that_dies(
    tmp_path: Path, up_factory, kafka_bootstrap: str, database_server: str
) -> None:
    config = write_config(tmp_path / "sale.toml", "restart.", tmp_path / "pg")
    env = {**CLEAN_ENV, "KAFKA_BOOTSTRAP": kafka_bootstrap, "DATABASE_URL": database_server}
    up = up_factory(config, env)
    up.wait_for("monitor: started")
    up.wait_for("[monitor]")
    [monitor] = up.descendants()
    monitor.kill()
    up.wait_for("monitor: exited with -9")
    up.wait_for("monitor: started")
    assert up.stop() == 0


def test_bad_config_fails_before_starting_anything(tmp_path: Path) -> None:
    config = tmp_path / "sale.toml"
    config.write_text("[broker]\npartitions = -3\n")
    result = subprocess.run(
        [*SALE, "--config", str(config), "up"],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "broker.partitions" in result.stderr
    assert "sale up:" not in result.stdout


async def test_topics_lists_partitions_messages_and_lag(
    tmp_path: Path, broker_config: BrokerConfig, topics: Topics
) -> None:
    seen: list[Event] = []

    async def handle(event: Event, source: Source) -> None:
        seen.append(event)

    async with Bus(broker_config, producer="test") as bus:
        for i in range(5):
            await bus.publish(every_event(task_id=f"lag-{i}")[0])
    reader = Bus(broker_config, producer="reader")
    reader.subscribe(["tasks"], "reader", handle)
    async with reader:
        while len(seen) < 5:
            await asyncio.sleep(0.05)
    async with Bus(broker_config, producer="test") as bus:
        for i in range(3):
            await bus.publish(every_event(task_id=f"later-{i}")[0])

    config = tmp_path / "sale.toml"
    config.write_text(f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n')
    env = {**CLEAN_ENV, "KAFKA_BOOTSTRAP": broker_config.bootstrap}
    result = subprocess.run(
        [*SALE, "--config", str(config), "topics"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == set(topics.every())  # the inbox too, with its own partition count
    assert rows[topics.inbox][1] == str(broker_config.inbox_partitions)
    tasks_row = rows[topics.tasks]
    assert tasks_row[1:3] == [str(broker_config.partitions), "8"]
    assert f"{broker_config.topic_prefix}reader=3" in tasks_row[3:]


def test_a_second_up_on_the_same_config_refuses_and_leaves_the_first_alone(
    tmp_path: Path, kafka_bootstrap: str, database_server: str
) -> None:
    """One stack per config: the second `sale up` refuses in one line naming the running one,
    and starts, stops, deletes and overwrites nothing of it; the commands beside it still join
    the first (`sale topics` with nothing exported); a stack killed outright leaves a lock the
    next start takes over, saying so."""
    prefix = f"lock{uuid.uuid4().hex[:8]}."
    config = write_config(tmp_path / "sale.toml", prefix, tmp_path / "pg", services="[]")
    run_dir = tmp_path / ".sale"  # `sale up`'s default: beside the config
    given = {**CLEAN_ENV, "KAFKA_BOOTSTRAP": kafka_bootstrap, "DATABASE_URL": database_server}
    first = Up(config, given, run_dir)
    try:
        first.wait_for("sale up: ready")
        published = (run_dir / "endpoints.json").read_text()
        second = subprocess.run(
            [*SALE, "--config", str(config), "up", "--run-dir", str(run_dir)],
            env=given,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        [line] = second.stderr.splitlines()
        assert line.startswith(
            f"sale up: a stack already runs on this config (pid {first.process.pid}, "
            f"config {config}, started "
        ), line
        assert f"broker {kafka_bootstrap}" in line and "stop it first" in line
        assert "ready" not in second.stdout and "topics:" not in second.stdout
        assert first.process.poll() is None
        assert (run_dir / "endpoints.json").read_text() == published
        topics = subprocess.run(
            [*SALE, "--config", str(config), "topics"],
            env=CLEAN_ENV,  # nothing exported: `sale topics` finds the running stack itself
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert topics.returncode == 0, topics.stderr
        assert f"{prefix}tasks" in topics.stdout
        assert first.stop() == 0
    finally:
        first.kill()
    assert not (run_dir / "endpoints.json").exists()

    killed = Up(config, given, run_dir)
    try:
        killed.wait_for("sale up: ready")
        killed.process.kill()  # no chance to clear its lock: the kernel releases it
        killed.process.wait(timeout=10)
        after = Up(config, given, run_dir)
        try:
            note = after.wait_for("taking over the lock")
            assert f"a stack that is gone (pid {killed.process.pid}, config {config}" in note
            after.wait_for("sale up: ready")
            assert after.stop() == 0
        finally:
            after.kill()
    finally:
        killed.kill()
