"""A stop's steps are bounded (`shared.stopping`), its run cancelled before the deadline
(`services.process`), and a child is stopped then killed with its group (`shared.children`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from marketplace.services import process
from marketplace.shared import children, stopping


@pytest.fixture(autouse=True)
def no_stop_under_way():
    stopping.reset()
    yield
    stopping.reset()


async def test_a_step_that_overruns_its_bound_is_cancelled_and_the_stop_goes_on() -> None:
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    start = time.monotonic()
    assert not await stopping.within(hangs(), 0.2, "a step that hangs")
    assert time.monotonic() - start < 1.0
    assert cancelled.is_set()


async def test_a_step_that_fails_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise ConnectionError("the broker is gone")

    assert not await stopping.within(fails(), 1.0, "the last commit")
    assert "the last commit failed" in caplog.text


async def test_each_step_gets_no_more_than_what_is_left_of_the_whole_stop() -> None:
    stopping.begin(0.3)
    start = time.monotonic()
    assert not await stopping.within(asyncio.sleep(10), 5.0, "a step")
    assert not await stopping.within(asyncio.sleep(10), 5.0, "the next step")
    assert time.monotonic() - start < 1.0
    stopping.reset()
    assert await stopping.within(asyncio.sleep(0.01), 5.0, "a step that ends in time")


async def test_a_run_that_ignores_its_stop_is_cancelled_within_the_stop_s_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`until_signalled` in this process (no watchdog): the stop set, a run that will not
    return is cancelled before `STOP_S` and `until_signalled` returns."""
    monkeypatch.setattr(stopping, "STOP_S", 1.0)
    monkeypatch.setattr(process, "STOP_S", 1.0)
    monkeypatch.setattr(process, "CANCEL_S", 0.5)
    cancelled = asyncio.Event()

    async def stubborn(stop: asyncio.Event) -> None:
        await stop.wait()
        try:
            await asyncio.sleep(3600)  # a flush to a broker that is gone
        finally:
            cancelled.set()

    async def stop_soon() -> None:
        await asyncio.sleep(0.2)
        os.kill(os.getpid(), process.signal.SIGTERM)

    signalling = asyncio.create_task(stop_soon())
    start = time.monotonic()
    await process.until_signalled(stubborn, "stubborn", own_process=False)
    await signalling
    assert time.monotonic() - start < 0.2 + 1.0 + 0.3
    assert cancelled.is_set()


def test_a_child_that_ignores_sigterm_is_killed_with_its_group_after_its_bound() -> None:
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    child = children.popen(
        [sys.executable, "-c", ignores + "print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    assert child.stdout.readline() == b"up\n"
    start = time.monotonic()
    code = children.stop(child, wait_s=0.5)
    assert code == -9
    assert 0.5 <= time.monotonic() - start < 2.0


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_child_is_signalled_when_its_parent_dies() -> None:
    """A parent started with `popen` a child, and is killed: the kernel ends the child."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from marketplace.shared import children; "
            "c = children.popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(c.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _exists(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _exists(child)


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
