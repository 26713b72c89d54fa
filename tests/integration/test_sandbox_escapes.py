"""The escapes found when model-written code was run as an attacker would (issue 13, part 3), each
tried again against the sandbox: the host's Unix sockets (Postgres's among them), files left in
/tmp, /var/tmp and /dev/shm after the run, more than a bounded amount written there, and a daemon
that re-forks to outlive its run. Each one got through the sandbox that had only a network
namespace, a throwaway uid and rlimits.

They need root: the sandbox then runs the code as a uid of its own, as in production, and the
host side of each test (a socket in /run) needs it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.shared.sandbox import Limits, RunResult, run_python

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the per-run uid needs root")

QUICK = Limits(cpu_s=5, wall_s=20, memory_mb=256, processes=8, file_mb=1, output_kb=16)
SECRET = "hidden tests of task 42"
POSTGRES_SOCKETS = [
    Path(directory, ".s.PGSQL.5432") for directory in ("/run/postgresql", "/var/run/postgresql")
]

CONNECT = """
import socket, sys
try:
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(3)
    client.connect({path!r})
    print("reached:", client.recv(100).decode())
except OSError as error:
    print("unreachable:", type(error).__name__)
"""


class SecretServer:
    """A Unix socket any uid may connect to, in a directory any uid may pass through, that
    answers every connection with `SECRET` and counts them."""

    def __init__(self, parent: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="sale-escape-", dir=parent)
        os.chmod(self.directory, 0o755)
        self.path = os.path.join(self.directory, "server.sock")
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o777)
        self.listener.listen()
        self.listener.settimeout(0.2)
        self.connections = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with connection:
                connection.sendall(SECRET.encode())

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(params=["/tmp", "/run"])
def secret_server(request: pytest.FixtureRequest) -> Iterator[SecretServer]:
    server = SecretServer(request.param)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("caller", ["root", "unprivileged"])
def test_a_host_unix_socket_is_out_of_reach(secret_server: SecretServer, caller: str) -> None:
    run = run_python if caller == "root" else run_as_unprivileged
    result = run(CONNECT.format(path=secret_server.path), QUICK)
    assert result.ok, result.summary()
    assert result.stdout.startswith("unreachable"), result.stdout
    assert SECRET not in result.stdout
    assert secret_server.connections == 0


@pytest.mark.parametrize("path", POSTGRES_SOCKETS, ids=str)
def test_the_postgres_socket_is_out_of_reach(path: Path) -> None:
    """The code would log in as the superuser (a startup message; 'R' is the server's answer)."""
    if not path.is_socket():
        pytest.skip(f"no Postgres listens on {path} here")
    code = f"""
import socket, struct
params = b"user\\0postgres\\0database\\0postgres\\0\\0"
try:
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(3)
    client.connect({str(path)!r})
    client.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    print("reached: the server answered", client.recv(1))
except OSError as error:
    print("unreachable:", type(error).__name__)
"""
    result = run_python(code, QUICK)
    assert result.ok, result.summary()
    assert result.stdout.startswith("unreachable"), result.stdout


@contextlib.contextmanager
def host_paths(*directories: str) -> Iterator[list[Path]]:
    """A fresh name in each directory; whatever the run leaves there is removed afterwards."""
    name = f"sale-escape-{uuid.uuid4().hex}"
    paths = [Path(directory, name) for directory in directories]
    try:
        yield paths
    finally:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@pytest.mark.parametrize("caller", ["root", "unprivileged"])
def test_files_in_tmp_and_shm_do_not_outlive_the_run(caller: str) -> None:
    run = run_python if caller == "root" else run_as_unprivileged
    with host_paths("/tmp", "/var/tmp", "/dev/shm") as paths:
        code = "".join(f"open({str(p)!r}, 'w').write('left behind')\n" for p in paths)
        result = run(code + "print('written')", QUICK)
        assert result.ok, result.summary()
        assert result.stdout == "written\n"
        assert [p for p in paths if p.exists()] == []


@pytest.mark.parametrize("directory", ["/tmp", "/var/tmp", "/dev/shm"])
def test_writing_to_tmp_and_shm_is_bounded(directory: str) -> None:
    """1 MB files (the file size limit) until one is refused, 100 MB at most: a quota stops it."""
    with host_paths(directory) as (path,):
        code = f"""
import os, sys
os.mkdir({str(path)!r})
for n in range(100):
    try:
        with open(os.path.join({str(path)!r}, str(n)), "wb") as f:
            f.write(b"x" * 2**20)
    except OSError as error:
        print(n, file=sys.stderr)
        raise
print(100)
"""
        result = run_python(code, QUICK)
        written_mb = int(result.stdout or result.stderr.split()[0])
        assert written_mb < 100, f"{written_mb} MB written to {directory}"
        assert result.limit == "disk", result.summary()
        quota = Limits().shm_mb if directory == "/dev/shm" else Limits().disk_mb
        assert written_mb <= quota
        assert "No space left on device" in result.stderr
        assert not path.exists()


# Each generation forks and leaves, so the daemon is never long at one pid; a refused fork (EAGAIN
# from the process limit) is simply tried again. The marker in its command line names it for the
# host side; it ends by itself after 8 s, so a run that got away does not stay forever.
DAEMON = """
import os, sys, time
deadline = time.time() + 8
while time.time() < deadline:
    try:
        if os.fork():
            os._exit(0)
    except OSError:
        pass
"""
START_DAEMONS = """
import os, sys, time
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        os.execv(sys.executable, [sys.executable, "-c", {daemon!r}, {marker!r}])
time.sleep(0.5)  # the daemons are at work when the run ends
print("the daemons run")
"""
# The same run from an unprivileged caller: the system Python, the project from this checkout.
AS_UNPRIVILEGED = """
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
from marketplace.shared.sandbox import Limits, RunResult, run_python
result = run_python(sys.argv[2], Limits(**json.loads(sys.argv[3])))
print(json.dumps(dataclasses.asdict(result)))
"""
REPO = Path(__file__).resolve().parents[2]


def marked_processes(marker: str) -> list[int]:
    """Live processes (zombies aside) whose command line carries `marker`."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if marker.encode() in cmdline and state not in "ZX":
                found.append(int(name))
    return found


def run_as_unprivileged(code: str, limits: Limits) -> RunResult:
    """`code` run in the sandbox by a caller that is not root (uid 65534: nobody), through the
    system Python and this checkout, as a service running as its own user would."""
    if not all(path.stat().st_mode & 0o001 for path in (REPO, *REPO.parents)):
        pytest.skip("the checkout is not reachable by an unprivileged user")
    setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    limits_json = json.dumps(dataclasses.asdict(limits))
    command = [*setpriv, "/usr/bin/python3", "-c", AS_UNPRIVILEGED, str(REPO), code, limits_json]
    done = subprocess.run(command, cwd="/", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return RunResult(**json.loads(done.stdout))


@pytest.mark.parametrize("caller", ["root", "unprivileged"])
def test_a_reforking_daemon_does_not_outlive_the_run(caller: str) -> None:
    marker = f"sale-escape-{uuid.uuid4().hex}"
    code = START_DAEMONS.format(daemon=DAEMON, marker=marker)
    run = run_python if caller == "root" else run_as_unprivileged
    summary = run(code, QUICK).summary()
    assert summary.startswith("ok"), summary
    survivors = marked_processes(marker)
    time.sleep(0.5)
    survivors += marked_processes(marker)
    assert survivors == [], f"{len(survivors)} processes of the run still alive"


def test_the_host_files_are_out_of_sight() -> None:
    """World-readable files of the host (this test, the project's data) cannot be read."""
    result = run_python(f"print(open({__file__!r}).read()[:20])", QUICK)
    assert not result.ok
    assert "FileNotFoundError" in result.stderr
    assert result.stdout == ""


def test_the_host_processes_are_out_of_sight() -> None:
    code = "import os\nprint(sorted(int(n) for n in os.listdir('/proc') if n.isdigit()))"
    result = run_python(code, QUICK)
    assert result.ok, result.summary()
    assert result.stdout == "[1, 2]\n"  # its init and itself


NESTED_NAMESPACE = """
import ctypes, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
refused = libc.unshare(0x10000000) != 0  # CLONE_NEWUSER
print("unshare(CLONE_NEWUSER):", "refused" if refused else "made", os.strerror(ctypes.get_errno()))
tool = subprocess.run(["unshare", "-r", "id"], capture_output=True, text=True)
print("unshare -r id:", tool.returncode, (tool.stdout + tool.stderr).strip()[:80])
found = []
worker = threading.Thread(target=lambda: found.append(sum(range(10))))
worker.start(); worker.join()
print("threads:", found)
"""


def test_the_code_cannot_make_a_user_namespace_and_threads_still_work() -> None:
    """Issue 24: `unshare -r id` worked inside (a user namespace of its own: root there, and
    the kernel's namespaced code paths within reach). The init's seccomp filter refuses it,
    by the system call and by the tool; threads (clone, or clone3 falling back to clone)
    still start."""
    run = run_python(NESTED_NAMESPACE, QUICK)
    assert run.exit_code == 0, run.stderr
    assert "unshare(CLONE_NEWUSER): refused Operation not permitted" in run.stdout
    assert "unshare -r id: 0" not in run.stdout and "uid=0" not in run.stdout
    assert "threads: [45]" in run.stdout
