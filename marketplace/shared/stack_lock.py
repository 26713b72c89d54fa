"""One stack per run directory: the lock `sale up` (and `sale run`) holds while its stack runs.

Two stacks on one config would share its run directory (`.sale` beside the config file): the
second would start another broker and more agents, publish its own endpoints over the first's,
and delete them when it stops, leaving every command against the first stack lost. So a stack
takes `<run dir>/stack.lock` before it starts anything, with an OS lock (`fcntl.flock`) that
the kernel releases when the process ends however it ends: a crash never leaves a false lock.
The file names the holder (pid, config, start, and its endpoints once they are known), so a
second start refuses in one line that says which stack runs. A file naming a holder whose lock
is free is a stack that ended without clearing it (killed): it is taken over, and said so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from marketplace.shared.database import shown
from marketplace.shared.errors import UserError

FILE = "stack.lock"


class StackRunning(UserError):
    """Another stack holds the run directory's lock; the message names it."""


@dataclass
class Holder:
    """What the lock file says of the stack that holds it."""

    pid: int
    config: str
    started_at: str
    endpoints: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """`pid 12, config /x/sale.toml, started 2026-…, broker 127.0.0.1:9092, database …`."""
        where = [f"broker {b}" for b in [self.endpoints.get("KAFKA_BOOTSTRAP")] if b]
        where += [f"database {shown(d)}" for d in [self.endpoints.get("DATABASE_URL")] if d]
        return ", ".join(
            [f"pid {self.pid}", f"config {self.config}", f"started {self.started_at}", *where]
        )


class StackLock:
    """The held lock of one run directory; `publish` adds the stack's endpoints to it."""

    def __init__(self, fd: int, holder: Holder) -> None:
        self._fd = fd
        self.holder = holder

    def publish(self, endpoints: Mapping[str, str]) -> None:
        self.holder.endpoints = dict(endpoints)
        self._write()

    def _write(self) -> None:
        text = json.dumps(self.holder.__dict__, indent=2) + "\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)


@contextlib.contextmanager
def held(run_dir: Path, config_path: Path) -> Iterator[tuple[StackLock, Holder | None]]:
    """The run directory's lock while the block runs, and the holder a stack that is gone left
    in it (None: it was free and clear). `StackRunning` if a live stack holds it: nothing of
    that stack is touched."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        running = read(path)
        named = running.describe() if running else f"its lock is {path}"
        raise StackRunning(
            f"a stack already runs on this config ({named}); stop it first, or give another "
            "--run-dir"
        ) from None
    try:
        gone = _holder(os.pread(fd, 1 << 16, 0))
        lock = StackLock(fd, Holder(os.getpid(), str(config_path.absolute()), _now()))
        lock._write()
        try:
            yield lock, gone
        finally:
            os.ftruncate(fd, 0)  # a stop leaves the file clear: only a killed stack's stays
    finally:
        os.close(fd)  # releases the lock


def read(path: Path) -> Holder | None:
    """The holder the lock file names, if it names one."""
    try:
        return _holder(path.read_bytes())
    except OSError:
        return None


def _holder(raw: bytes) -> Holder | None:
    try:
        found = json.loads(raw)
        return Holder(
            pid=int(found["pid"]),
            config=str(found["config"]),
            started_at=str(found["started_at"]),
            endpoints={str(k): str(v) for k, v in found.get("endpoints", {}).items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
