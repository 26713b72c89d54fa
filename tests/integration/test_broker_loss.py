"""A broker that dies or comes back empty is noticed: the stack stops with one message instead
of logging errors forever, and an auctioneer stops rather than deciding on a lost log."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from marketplace.services.auctioneer import Auctioneer
from marketplace.shared.admin import BrokerLost, ensure_topics
from marketplace.shared.bus import Bus
from marketplace.shared.config import AuctionConfig, BrokerConfig, Config
from marketplace.shared.keyfiles import new_key
from marketplace.shared.local_broker import LocalBroker, free_port
from schemas.topics import Topics
from tests.integration.test_stack import CLEAN_ENV, SALE, Up, write_config


@pytest.fixture
def ups(tmp_path: Path) -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.kill()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own, to restart empty (Tansu keeps its log in memory)."""
    broker = LocalBroker(port=free_port(), log_path=tmp_path / "tansu.log").start()
    yield broker
    broker.stop()


def restart_empty(broker: LocalBroker, tmp_path: Path) -> LocalBroker:
    broker.stop()
    return LocalBroker(port=broker.port, log_path=tmp_path / "tansu-again.log").start()


def finished_output(up: Up) -> str:
    """All an exited `sale up` printed (the rest is read through the same buffered reader)."""
    assert up.process.stdout is not None
    return "".join(up.lines) + up.process.stdout.read()


def test_up_stops_with_one_message_when_its_broker_dies(
    tmp_path: Path, ups: list[Up], database_server: str
) -> None:
    config = write_config(tmp_path / "sale.toml", "dies.", tmp_path / "pg")
    up = Up(config, {**CLEAN_ENV, "DATABASE_URL": database_server}, tmp_path / "run")
    ups.append(up)
    up.wait_for("sale up: ready")
    up.wait_for("[monitor]")
    children = up.descendants()
    [tansu] = [p for p in children if "tansu" in " ".join(p.cmdline())]
    tansu.send_signal(signal.SIGKILL)
    up.wait_for("sale up: broker lost", timeout_s=30)
    assert up.process.wait(timeout=60) == 1
    output = finished_output(up)
    assert output.count("broker lost") == 1, output
    assert "sale up: stopped" in output, output
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {alive}"


def test_up_stops_with_one_message_when_its_broker_comes_back_empty(
    tmp_path: Path, ups: list[Up], database_server: str, own_broker: LocalBroker
) -> None:
    config = write_config(tmp_path / "sale.toml", "empty.", tmp_path / "pg", '["auctioneer"]')
    env = {**CLEAN_ENV, "KAFKA_BOOTSTRAP": own_broker.bootstrap, "DATABASE_URL": database_server}
    up = Up(config, env, tmp_path / "run")
    ups.append(up)
    up.wait_for("sale up: ready")
    up.wait_for("roster read")
    again = restart_empty(own_broker, tmp_path)
    try:
        up.wait_for("sale up: broker lost", timeout_s=30)
        assert up.process.wait(timeout=60) == 1
    finally:
        again.stop()
    output = finished_output(up)
    assert output.count("sale up: broker lost") == 1, output
    every = len(Topics("").every())  # the streams of record and the inbox
    assert f"lost {every} of the marketplace's topics" in output or "auctioneer stopped" in output


async def test_an_auctioneer_stops_when_its_broker_comes_back_empty(
    tmp_path: Path, own_broker: LocalBroker
) -> None:
    broker = BrokerConfig(
        bootstrap=own_broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        partitions=2,
        fetch_max_wait_ms=10,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    await ensure_topics(broker)
    config = Config(broker=broker, auction=AuctionConfig(mechanism="paper"))
    auctioneer = Auctioneer(config, Bus(broker, producer="auctioneer"))
    auctioneer.broker_check_s = 0.5
    stop = asyncio.Event()
    running = asyncio.create_task(auctioneer.run(stop))
    async with asyncio.timeout(30):
        while not auctioneer.consumer.assignment():
            await asyncio.sleep(0.1)
    again = restart_empty(own_broker, tmp_path)
    try:
        with pytest.raises(BrokerLost, match="came back empty"):
            await asyncio.wait_for(running, 60)
    finally:
        stop.set()
        again.stop()


LONE = {  # a service run alone, as a user runs it, and what else its config needs
    "recorder": ["recorder"],
    "monitor": ["monitor"],
    "agent": ["agent", "--id", "lone"],
}


@pytest.mark.parametrize("service", list(LONE))
def test_a_service_run_alone_stops_with_one_message_when_its_broker_comes_back_empty(
    service: str, tmp_path: Path, database_server: str, own_broker: LocalBroker
) -> None:
    """`sale recorder`, `sale monitor`, `sale agent` without `sale up`: each watches its broker
    itself and exits 3 with one `broker lost: ...` (the same helper serves the verifier)."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    config = tmp_path / "sale.toml"
    config.write_text(
        f'[broker]\ntopic_prefix = "{prefix}"\npartitions = 2\nfetch_max_wait_ms = 10\n'
        "session_timeout_ms = 2000\nheartbeat_interval_ms = 300\n"
        '[auction]\nmechanism = "paper"\n'
        '[[agents]]\nid = "lone"\nbackend = "scripted"\nmodel = "scripted"\n'
        'input_price = 0.01\noutput_price = 0.01\nexecutor = "chat"\n'
    )
    if service == "agent":
        new_key("lone", "agent", Path(os.environ["SALE_KEY_DIR"]), Path(os.environ["SALE_KEYRING"]))
    env = {**os.environ, "KAFKA_BOOTSTRAP": own_broker.bootstrap, "DATABASE_URL": database_server}
    log = tmp_path / f"{service}.log"
    process = subprocess.Popen(
        [*SALE, "--config", str(config), *LONE[service]],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    again: LocalBroker | None = None
    try:
        deadline = time.monotonic() + 60
        while "serving" not in log.read_text() or not _has_topics(own_broker, prefix):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(6)  # one check of the broker sees the topics
        again = restart_empty(own_broker, tmp_path)
        assert process.wait(timeout=60) == 3, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
        if again is not None:
            again.stop()
    output = log.read_text()
    assert output.count("broker lost: ") == 1, output
    assert "came back empty" in output, output


def _has_topics(broker: LocalBroker, prefix: str) -> bool:
    from marketplace.shared.admin import BrokerUnreachable, missing_topics

    try:
        return not asyncio.run(
            missing_topics(BrokerConfig(bootstrap=broker.bootstrap, topic_prefix=prefix))
        )
    except BrokerUnreachable:
        return False
