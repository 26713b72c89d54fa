"""Run untrusted, model-written Python in a subprocess — never in the caller's process.

Each run gets namespaces of its own — no network, its own process tree, and a file system of
its own: the host's /usr and /etc read-only, a fresh /tmp, /var/tmp, /run and /dev/shm on tmpfs
sized by its limits, none of the host's Unix sockets — its own throwaway uid and limits on CPU,
memory, file size and processes. util-linux tools exec one another down to a small init that
builds that file system, runs the code and reports how it ended; when the init ends, the kernel
kills every process left in the run. Why each choice, and the known gaps: docs/sandbox.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from marketplace.shared.children import die_with_parent

SYSTEM_PYTHON = "/usr/bin/python3"
# Per-run uids come from here: far above any account or subordinate-uid range in use.
UID_BASE = 1_500_000_000
UID_SPAN = 100_000_000
_PATH = "/usr/local/bin:/usr/bin:/bin"
_TAIL_LINES = 12
_INIT_ERROR = "sandbox-init: "
_TOOL_ERRORS = ("prlimit: ", "unshare: ", "setpriv: ", _INIT_ERROR)


class SandboxUnavailable(RuntimeError):
    """The isolation cannot be set up here, so nothing was run."""


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 10  # RLIMIT_CPU (SIGXCPU at cpu_s, SIGKILL one second later)
    wall_s: float = 15.0  # wall-clock timeout; the whole run is killed
    memory_mb: int = 512  # RLIMIT_AS
    processes: int = 16  # RLIMIT_NPROC, for the run's own uid
    file_mb: int = 10  # RLIMIT_FSIZE (also caps stdout/stderr on disk)
    output_kb: int = 64  # of stdout and of stderr kept: head and tail, a marker between
    disk_mb: int = 64  # tmpfs (RAM, freed after) for the run's directory, /tmp and /var/tmp
    shm_mb: int = 16  # tmpfs for /dev/shm

    def __post_init__(self) -> None:
        """Refuse a limit of zero or less here, with its name: tmpfs reads `size=0` as no limit
        at all, and rlimits of zero would fail the run in ways that name nothing."""
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"sandbox limit {name} must be positive, not {value}")


DEFAULT_LIMITS = Limits()

_LIMIT_TEXT = {
    "wall_time": "wall-clock time limit",
    "cpu_time": "CPU time limit",
    "memory": "memory limit",
    "file_size": "file size limit",
    "processes": "process limit",
    "disk": "disk quota",
}


@dataclass(frozen=True)
class RunResult:
    ok: bool  # exit code 0 and no limit hit
    exit_code: int | None  # negative: killed by that signal; None: we killed it (wall time)
    stdout: str
    stderr: str
    duration_s: float
    limit: str | None  # "wall_time", "cpu_time", "memory", "file_size", "processes", "disk", None
    uid: int | None = None  # the throwaway uid the code ran as (None: the caller's own)

    def summary(self, timed: bool = True) -> str:
        """What happened, in a few lines a person or a model can act on. Untimed, the same run
        reads the same every time (a prompt made of it can be answered from the cache)."""
        took = f"after {self.duration_s:.2f} s" if timed else ""
        if self.ok:
            head = f"ok: exit code 0 {took}"
        elif self.limit:
            head = f"stopped: hit the {_LIMIT_TEXT.get(self.limit, self.limit)} {took}"
        elif self.exit_code is not None and self.exit_code < 0:
            head = f"failed: killed by {_signal_name(-self.exit_code)} {took}"
        else:
            head = f"failed: exit code {self.exit_code} {took}"
        head = head.rstrip()
        lines = self.stderr.rstrip().splitlines()[-_TAIL_LINES:]
        if not lines:
            return head
        return f"{head}\nstderr (last {len(lines)} lines):\n" + "\n".join(lines)


def run_python(code: str, limits: Limits = DEFAULT_LIMITS, stdin: str = "") -> RunResult:
    """Run `code` as a script in the sandbox and report how it went.

    Raises `SandboxUnavailable` (running nothing) when the isolation cannot be set up.
    """
    tools = _tools()
    _ensure_isolated(tools)
    return _checked(_run(tools, code, limits, stdin))


async def run_python_async(
    code: str, limits: Limits = DEFAULT_LIMITS, stdin: str = ""
) -> RunResult:
    """`run_python` in a worker thread, so the event loop keeps going while the code runs."""
    return await asyncio.to_thread(run_python, code, limits, stdin)


# --- set-up checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tools:
    python: str
    prlimit: str
    unshare: str
    setpriv: str


_UTIL_LINUX = ("prlimit", "unshare", "setpriv")  # in _Tools' order
_tools_lock = threading.Lock()
_tools_found: _Tools | None = None
_isolation_checked = False


def _tools() -> _Tools:
    """Find the interpreter and the util-linux tools once; a clear error if one is missing."""
    global _tools_found
    with _tools_lock:
        if _tools_found is None:
            if not os.access(SYSTEM_PYTHON, os.X_OK):
                raise SandboxUnavailable(
                    f"{SYSTEM_PYTHON} is missing: the sandbox needs the system Python "
                    "(Debian: apt-get install python3), which every uid can run"
                )
            found = {name: shutil.which(name, path=_PATH) for name in _UTIL_LINUX}
            missing = [name for name, path in found.items() if path is None]
            if missing:
                raise SandboxUnavailable(
                    f"missing {', '.join(missing)} (util-linux): refusing to run untrusted code"
                )
            _tools_found = _Tools(SYSTEM_PYTHON, *(str(found[name]) for name in _UTIL_LINUX))
        return _tools_found


_PROBE = """import os, socket
names = sorted(n for _, n in socket.if_nameindex())
print(os.getuid(), os.getppid(), len(os.listdir("/run")), *names)
"""


def _ensure_isolated(tools: _Tools) -> None:
    """Once per process: run a probe and check it sees only `lo`, the uid we gave it, our init as
    its parent (a PID namespace of its own) and an empty /run (none of the host's sockets)."""
    global _isolation_checked
    with _tools_lock:
        if _isolation_checked:
            return
        result = _checked(_run(tools, _PROBE, Limits(cpu_s=5, wall_s=20), ""))
        words = result.stdout.split()
        root = os.geteuid() == 0
        uid = int(words[0]) if words and words[0].isdigit() else -1
        uid_ok = uid >= UID_BASE if root else uid == 0
        if not (result.ok and uid_ok and words[1:] == ["1", "0", "lo"]):
            raise SandboxUnavailable(f"sandbox probe failed, refusing to run: {result.summary()}")
        _isolation_checked = True


def _checked(result: RunResult) -> RunResult:
    """A tool before Python failing (e.g. `unshare: unshare failed`) means nothing ran.

    Code that prints such a line itself and exits 1 is taken for the same: it can only make
    the caller see `SandboxUnavailable`, which is the safe side.
    """
    if result.exit_code == 1 and result.stderr.startswith(_TOOL_ERRORS):
        raise SandboxUnavailable(f"cannot isolate the code: {result.stderr.strip()}")
    return result


# --- one run -----------------------------------------------------------------------------------

# The run's init, PID 1 of the run's namespaces: builds its root, starts the code, reaps, reports
# (marketplace/shared/sandbox_init.py). Its text is passed to `python -c`: nothing is imported
# from the package inside the run.
_INIT = resources.files("marketplace.shared").joinpath("sandbox_init.py").read_text("utf-8")

_uids_lock = threading.Lock()
_uids_in_use: set[int] = set()


def _run(tools: _Tools, code: str, limits: Limits, stdin: str) -> RunResult:
    root = os.geteuid() == 0
    uid = _take_uid() if root else None
    outer = Path(tempfile.mkdtemp(prefix="sale-sandbox-"))
    try:
        work = outer / "work"  # a path inside the run's own root, on its tmpfs; not on the host
        (outer / "main.py").write_text(code, encoding="utf-8")
        (outer / "stdin").write_text(stdin, encoding="utf-8")
        nproc = limits.processes if uid is not None else _threads_of(os.getuid()) + limits.processes
        env = {"PATH": _PATH, "LANG": "C.UTF-8", "HOME": str(work), "TMPDIR": str(work)}
        with (
            open(outer / "stdin", "rb") as fin,
            open(outer / "stdout", "wb") as fout,
            open(outer / "stderr", "wb") as ferr,
        ):
            start = time.monotonic()
            try:
                proc = subprocess.Popen(
                    _command(tools, limits, outer, uid, nproc),
                    cwd=outer,
                    env=env,
                    stdin=fin,
                    stdout=fout,
                    stderr=ferr,
                    start_new_session=True,
                    preexec_fn=die_with_parent(signal.SIGKILL),  # not outliving its caller
                )
            except OSError as error:
                raise SandboxUnavailable(f"cannot start the sandbox: {error}") from error
            try:
                timed_out, code_or_signal, cpu_s = _wait(proc, limits.wall_s)
            finally:
                if uid is not None:
                    _sweep(uid)
            duration = time.monotonic() - start
        code_or_signal, cpu_s = _reported(outer / "status", code_or_signal, cpu_s)
        keep = limits.output_kb * 1024 // 2
        stdout = _read_capped(outer / "stdout", keep)
        stderr = _read_capped(outer / "stderr", keep).replace(f"{work}/", "")  # same every run
    finally:
        _remove(outer)
        if uid is not None:
            with _uids_lock:
                _uids_in_use.discard(uid)
    limit = _which_limit(timed_out, code_or_signal, stderr, cpu_s, limits)
    return RunResult(
        ok=code_or_signal == 0 and limit is None,
        exit_code=None if timed_out else code_or_signal,
        stdout=stdout,
        stderr=stderr,
        duration_s=duration,
        limit=limit,
        uid=uid,
    )


def _command(tools: _Tools, limits: Limits, outer: Path, uid: int | None, nproc: int) -> list[str]:
    mb = 1024 * 1024
    command = [
        tools.prlimit,
        f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
        f"--as={limits.memory_mb * mb}",
        f"--fsize={limits.file_mb * mb}",
        f"--nproc={nproc}",
        "--core=0",
        "--",
        tools.unshare,
        *([] if uid is not None else ["--map-root-user"]),  # not root: a user namespace first
        "--net",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--",
        tools.python,
        "-I",
        "-S",
        "-c",
        _INIT,
        str(outer),
        str(outer / "work"),
        str(limits.disk_mb),
        str(limits.shm_mb),
        "-" if uid is None else str(uid),
        "--",
        tools.setpriv,
    ]
    if uid is None:  # uid 0 of the user namespace, with no capabilities left to use there
        command += ["--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
    else:
        command += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]
    return [*command, tools.python, "-E", "-s", "-u", "main.py"]


def _wait(proc: subprocess.Popen[bytes], wall_s: float) -> tuple[bool, int, float]:
    """Wait up to `wall_s`; kill the process group; reap. → (timed out, exit status, CPU s).

    The group is killed while the leader is still unreaped (a zombie at worst), so its pgid
    cannot have been recycled. On a timeout the run's init is killed too, and we wait until it
    is gone: the kernel has then killed every process of its PID namespace.
    """
    pidfd = os.pidfd_open(proc.pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], wall_s)
    finally:
        os.close(pidfd)
    inits = [] if ready else _pidfds(_children(proc.pid))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # we reaped it, not Popen
    for init in inits:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(init, signal.SIGKILL)
            select.select([init], [], [], 10.0)
        os.close(init)
    return not ready, proc.returncode, usage.ru_utime + usage.ru_stime


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the kernel here has no /proc/PID/task/TID/children)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1:2] == [str(pid)]:
            found.append(int(name))
    return found


def _pidfds(pids: list[int]) -> list[int]:
    fds = []
    for pid in pids:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(pid))
    return fds


def _reported(path: Path, status: int, cpu_s: float) -> tuple[int, float]:
    """The code's own exit status and CPU time, as its init wrote them; else the outer ones
    (the init was killed on a timeout, or it failed before the code started)."""
    try:
        words = path.read_text(encoding="ascii").split()
        return os.waitstatus_to_exitcode(int(words[0])), float(words[1])
    except (OSError, ValueError, IndexError):
        return status, cpu_s


def _which_limit(
    timed_out: bool, status: int, stderr: str, cpu_s: float, limits: Limits
) -> str | None:
    """Best effort, from the signal that ended the code and what it said on the way out."""
    if timed_out:
        return "wall_time"
    if status == 0:
        return None
    if status == -signal.SIGXCPU or (status == -signal.SIGKILL and cpu_s >= limits.cpu_s):
        return "cpu_time"  # SIGXCPU at the soft limit, SIGKILL at the hard one
    if status == -signal.SIGXFSZ or "File too large" in stderr:
        return "file_size"  # Python ignores SIGXFSZ, so it is usually OSError(EFBIG)
    if "No space left on device" in stderr:
        return "disk"  # the run's tmpfs is full
    lowered = stderr.lower()
    if "MemoryError" in stderr or "cannot allocate memory" in lowered:
        return "memory"
    if "out of memory" in lowered or "bad_alloc" in stderr:
        return "memory"
    if "Resource temporarily unavailable" in stderr or "can't start new thread" in stderr:
        return "processes"  # fork() or a new thread refused by RLIMIT_NPROC
    return None


# --- uids and processes ------------------------------------------------------------------------


def _take_uid() -> int:
    """A uid no account, no other run of ours and no live process is using."""
    busy = {uids[0] for _, _, uids, _ in _processes()}
    with _uids_lock:
        for _ in range(100):
            uid = UID_BASE + secrets.randbelow(UID_SPAN)
            if uid in _uids_in_use or uid in busy or _has_account(uid):
                continue
            _uids_in_use.add(uid)
            return uid
    raise SandboxUnavailable("no free uid for the sandbox")  # pragma: no cover


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _processes() -> Iterator[tuple[int, str, tuple[int, ...], int]]:
    """(pid, state, (real, effective, saved, fs uid), threads) of every process, from /proc."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="utf-8", errors="replace") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue  # gone already
        try:
            uids = tuple(int(u) for u in fields["Uid"].split())
            yield int(name), fields["State"].split()[0], uids, int(fields["Threads"])
        except (KeyError, ValueError, IndexError):
            continue


def live_pids(uid: int) -> list[int]:
    """Processes running under `uid`, zombies left out (they are dead, just not yet reaped)."""
    return [pid for pid, state, uids, _ in _processes() if uid in uids and state not in "ZX"]


def _threads_of(uid: int) -> int:
    return sum(threads for _, _, uids, threads in _processes() if uids[0] == uid)


def _sweep(uid: int) -> None:
    """Kill every process of the run's uid; repeat until none is left (bounded)."""
    for _ in range(200):
        pids = live_pids(uid)
        if not pids:
            return
        for pid in pids:
            _kill_if_owned(pid, uid)
        time.sleep(0.005)


def _kill_if_owned(pid: int, uid: int) -> None:
    """SIGKILL `pid` if it is still a process of `uid`.

    The pidfd pins the process: its number cannot be reused while the fd is open, so the uid we
    check is the uid of the process we signal.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone already
        return
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as status:
            line = next((s for s in status if s.startswith("Uid:")), "")
        if str(uid) in line.split()[1:]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass  # it died meanwhile
    finally:
        os.close(pidfd)


# --- files -------------------------------------------------------------------------------------


def _read_capped(path: Path, keep: int) -> str:
    """All of the file if it is at most 2·`keep` bytes, else its head and tail and a marker."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= 2 * keep:
            return f.read().decode("utf-8", errors="replace")
        head = f.read(keep)
        f.seek(size - keep)
        tail = f.read(keep)
    marker = f"\n[... {size - 2 * keep} bytes cut: output over {2 * keep // 1024} KB ...]\n"
    return head.decode("utf-8", errors="replace") + marker + tail.decode("utf-8", errors="replace")


def _remove(tree: Path) -> None:
    """Remove the run's files. A non-root caller may meet directories the code made unreadable
    or unwritable (it owns them then): open those up and try again."""
    try:
        shutil.rmtree(tree)
    except OSError:
        _open_up(tree)
        shutil.rmtree(tree, ignore_errors=True)


def _open_up(directory: Path) -> None:
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o700)  # before listing it: the listing is what a 000 mode refuses
        for entry in os.scandir(directory):
            if entry.is_dir(follow_symlinks=False):
                _open_up(Path(entry.path))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- start-up cost -----------------------------------------------------------------------------


def _timed_ms(command: list[str], runs: int) -> list[float]:
    """Wall milliseconds of each of `runs` runs of `command` (stdout and stderr discarded)."""
    figures = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, check=True)
        figures.append((time.perf_counter() - start) * 1000)
    return figures


def _bwrap_command(bwrap: str, python: str) -> list[str]:
    """The closest bubblewrap equivalent of our run, for comparison only (the sandbox does not
    use it): the same namespaces and read-only host directories, sized tmpfs, a fresh /proc."""
    command = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "etc"):
        if os.path.islink(f"/{name}"):
            command += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            command += ["--ro-bind", f"/{name}", f"/{name}"]
    for path in ("/tmp", "/var/tmp", "/dev/shm", "/run"):
        command += ["--size", str(DEFAULT_LIMITS.disk_mb * 1024 * 1024), "--tmpfs", path]
    return [*command, "--proc", "/proc", "--dev", "/dev", "--", python, "-E", "-s", "-c", "pass"]


def startup_costs(runs: int = 20) -> list[tuple[str, list[float]]]:
    """The start-up cost of each way to run `pass`: bare, the previous sandbox (network namespace,
    uid and rlimits only), this sandbox, and bubblewrap when it is installed."""
    tools = _tools()
    _ensure_isolated(tools)
    bare = [tools.python, "-E", "-s", "-u", "-c", "pass"]
    uid = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    previous = [tools.prlimit, "--as=536870912", "--", tools.unshare, "-n" if uid else "-rn"]
    previous += ["--", tools.setpriv, *uid, "--no-new-privs", "--", *bare]
    costs = [("bare python", _timed_ms(bare, runs))]
    costs.append(("previous sandbox (unshare -n)", _timed_ms(previous, runs)))
    ours = [run_python("pass").duration_s * 1000 for _ in range(runs)]
    costs.append(("this sandbox (run_python)", ours))
    if bwrap := shutil.which("bwrap", path=_PATH):
        costs.append(("bubblewrap 'bwrap'", _timed_ms(_bwrap_command(bwrap, tools.python), runs)))
    return costs


def main() -> None:
    """`python -m marketplace.shared.sandbox [RUNS]`: print the start-up costs, one line each."""
    import statistics
    import sys

    runs = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 20
    try:
        costs = startup_costs(runs)
    except SandboxUnavailable as error:
        raise SystemExit(f"sandbox unavailable: {error}") from None
    print(f"start-up cost of running `pass`, {runs} runs each, wall ms (median, 90th percentile):")
    for name, figures in costs:
        p90 = statistics.quantiles(figures, n=10)[-1] if len(figures) > 1 else figures[0]
        print(f"  {name:32} {statistics.median(figures):7.1f} {p90:7.1f}")
    if not shutil.which("bwrap", path=_PATH):
        print("  (bubblewrap is not installed: apt-get install bubblewrap to compare it)")


if __name__ == "__main__":
    main()
