"""Child processes that do not outlive what started them: the broker a test session or `sale up`
starts, the services `sale up` and the load test start, and any `sale` process started by a
test.

Three ways, for three kinds of parent death:
- stopped in order (`stop`): SIGTERM, a bounded wait, then SIGKILL to the child's whole
  process group (`popen` starts each child in a session of its own, so whatever it started
  goes too);
- killed outright (kill -9 of `sale loadtest`, of `sale up`, of pytest): on Linux the kernel
  signals the child when its parent dies (`prctl(PR_SET_PDEATHSIG)`, set between fork and
  exec by `popen`);
- started by code that does not use `popen` (a test's own `subprocess.Popen` of `python -m
  marketplace.app.cli ...`): with `EXIT_WITH_PARENT` in its environment, that process asks
  the kernel for the same itself as it starts (`exit_with_parent_if_asked`, in the module's
  `__main__`: never in a process that calls `main()` itself). The test session sets it for
  everything it starts.

The parent-death signal is the kernel's to send, so it needs no thread and no polling; it is
sent when the *thread* that started the child ends, so children are started from the main
thread (the event loop's) here. Elsewhere than Linux only the first way holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

EXIT_WITH_PARENT = "SALE_EXIT_WITH_PARENT"  # set in a `sale` process: it dies with its parent
STOP_WAIT_S = 5.0  # a child told to stop has this long (a service stops within it) before SIGKILL
_PR_SET_PDEATHSIG = 1

_prctl: Callable[..., int] | None = None
if sys.platform == "linux":  # resolved here: a preexec_fn must not import or load anything
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn`: the child is sent `sig` when this process (its starting thread) dies;
    a child whose parent died before it could ask exits at once. None where the kernel has no
    such thing."""
    if _prctl is None:
        return None
    parent = os.getpid()
    prctl = _prctl

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # died between our fork and the prctl
            os._exit(1)

    return in_child


def exit_with_parent_if_asked(environ: dict[str, str] | None = None) -> None:
    """In a `sale` process started with `EXIT_WITH_PARENT` set: SIGTERM when the parent dies
    (the process then stops as on any SIGTERM: within 5 s)."""
    if not (environ if environ is not None else os.environ).get(EXIT_WITH_PARENT):
        return
    if _prctl is None:
        return
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the parent is gone already: adopted by init
        sys.exit(1)


def popen(
    argv: list[str], *, death_signal: int = signal.SIGTERM, **options: Any
) -> subprocess.Popen:
    """`subprocess.Popen` of a child in a session of its own that gets `death_signal` when
    this process dies."""
    return subprocess.Popen(
        argv, start_new_session=True, preexec_fn=die_with_parent(death_signal), **options
    )


def stop(process: subprocess.Popen, wait_s: float = STOP_WAIT_S) -> int:
    """SIGTERM to the child and up to `wait_s` for it to end; then SIGKILL to its process group
    (it, if it has not ended, and whatever it started that is left), and its exit code."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        _ended(process.pid, wait_s)
        # before reaping it: while the leader is unreaped its group id cannot be another's
        kill_group(process.pid)
    return process.wait()


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _ended(pid: int, wait_s: float) -> bool:
    """Whether our child `pid` ends within `wait_s`, leaving it unreaped."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
        except ChildProcessError:
            return True  # reaped already
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
