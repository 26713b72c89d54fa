"""The sandbox: it runs code, stops each kind of runaway with the right label, keeps the network,
the file system and the caller out of reach, and leaves no process behind.

Limits are small so the whole file stays fast; timings are only bounded loosely, since the
machine has two cores and other work may be running.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from marketplace.shared import sandbox
from marketplace.shared.sandbox import Limits, SandboxUnavailable, run_python, run_python_async

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the per-run uid needs root")
QUICK = Limits(cpu_s=2, wall_s=10, memory_mb=256, processes=8, file_mb=1, output_kb=16)


def sandbox_processes(only: int | None = None) -> list[str]:
    """Live processes (zombies aside) of one run's uid, or of any sandbox uid, from /proc.

    Tests ask about their own run's uid: other sandbox users may run meanwhile.
    """
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields["Uid"].split()[0])
        in_range = sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SPAN
        mine = in_range if only is None else uid == only
        if mine and fields["State"].split()[0] not in "ZX":
            found.append(status)
    return found


def test_correct_code_runs_and_prints() -> None:
    result = run_python("import sys\nprint('hello', sys.stdin.read().upper())", QUICK, "world")
    assert result.ok, result.summary()
    assert result.exit_code == 0 and result.limit is None
    assert result.stdout == "hello WORLD\n"
    assert result.summary().startswith("ok")


def test_failing_assert_is_reported() -> None:
    result = run_python("assert 1 + 1 == 3, 'arithmetic'", QUICK)
    assert not result.ok
    assert result.exit_code == 1 and result.limit is None
    assert "AssertionError: arithmetic" in result.stderr
    assert "AssertionError: arithmetic" in result.summary()


def test_infinite_loop_is_stopped() -> None:
    result = run_python("while True:\n    pass", Limits(cpu_s=1, wall_s=8))
    assert not result.ok
    assert result.limit in ("cpu_time", "wall_time")
    assert result.duration_s < 8 + 5


def test_sleeper_hits_wall_time_and_is_killed() -> None:
    result = run_python("import time\nprint('start')\ntime.sleep(60)", Limits(wall_s=1))
    assert not result.ok
    assert result.limit == "wall_time" and result.exit_code is None
    assert result.stdout == "start\n"  # unbuffered: output before the kill is kept
    assert result.duration_s < 1 + 5


def test_huge_allocation_hits_memory() -> None:
    result = run_python("block = bytearray(10 * 1024**3)", QUICK)
    assert not result.ok
    assert result.limit == "memory"
    assert "MemoryError" in result.stderr


@as_root
def test_fork_bomb_hits_processes_and_leaves_nothing() -> None:
    result = run_python("import os\nwhile True:\n    os.fork()", QUICK)
    assert not result.ok
    assert result.limit == "processes", result.summary()
    assert "Resource temporarily unavailable" in result.stderr
    assert result.uid is not None and sandbox_processes(result.uid) == []


@as_root
def test_process_that_leaves_the_group_is_killed_too() -> None:
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('bye')"
    result = run_python(code, QUICK)
    assert result.ok, result.summary()
    assert result.uid is not None and sandbox_processes(result.uid) == []


def test_huge_file_hits_file_size() -> None:
    code = "with open('big', 'wb') as f:\n    for _ in range(100):\n        f.write(b'x' * 2**20)"
    result = run_python(code, QUICK)
    assert not result.ok
    assert result.limit == "file_size"
    assert "File too large" in result.stderr


@pytest.mark.parametrize("address", [("1.1.1.1", 53), ("127.0.0.1", 5432)])
def test_no_network(address: tuple[str, int]) -> None:
    code = f"import socket\nsocket.create_connection({address!r}, timeout=3)"
    result = run_python(code, QUICK)
    assert not result.ok and result.limit is None
    assert "Network is unreachable" in result.stderr


@as_root
@pytest.mark.parametrize("target", ["/root/sandbox-was-here", "/work/main/sandbox-was-here"])
def test_cannot_write_outside_its_directory(target: str) -> None:
    result = run_python(f"open({target!r}, 'w').write('x')", QUICK)
    assert not result.ok
    # Refused (an older sandbox showed the host's tree) or not there at all (its own root now).
    assert "PermissionError" in result.stderr or "FileNotFoundError" in result.stderr
    assert not Path(target).exists()


def test_fresh_directory_and_minimal_environment_removed_after() -> None:
    code = "import os, json\nprint(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ)}))"
    first = run_python(code, QUICK)
    second = run_python(code, QUICK)
    assert first.ok and second.ok, first.summary() + second.summary()
    seen = [json.loads(r.stdout) for r in (first, second)]
    assert seen[0]["cwd"] != seen[1]["cwd"]
    for run in seen:
        assert not Path(run["cwd"]).exists()
        assert run["env"]["HOME"] == run["cwd"]
        assert run["env"]["LANG"] == "C.UTF-8"
        assert "PYTHONPATH" not in run["env"]
        assert set(run["env"]) <= {"PATH", "LANG", "HOME", "TMPDIR"}


def test_output_is_truncated_and_says_so() -> None:
    result = run_python("print('a' * 100_000)\nprint('the end')", QUICK)
    assert result.ok
    assert len(result.stdout) < 17 * 1024
    assert "bytes cut" in result.stdout
    assert result.stdout.rstrip().endswith("the end")


def test_refuses_to_run_without_unshare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sandbox, "_tools_found", None)
    monkeypatch.setattr(sandbox, "_PATH", str(tmp_path))  # no util-linux there
    with pytest.raises(SandboxUnavailable, match="unshare"):
        run_python("print('never')", QUICK)


def test_refuses_to_run_when_the_namespace_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "unshare"
    refusal = "unshare: unshare failed: Operation not permitted"
    fake.write_text(f"#!/bin/sh\necho '{refusal}' >&2\nexit 1\n")
    fake.chmod(0o755)
    tools = sandbox._tools()
    monkeypatch.setattr(
        sandbox,
        "_tools_found",
        sandbox._Tools(tools.python, tools.prlimit, str(fake), tools.setpriv),
    )
    monkeypatch.setattr(sandbox, "_isolation_checked", False)
    with pytest.raises(SandboxUnavailable, match="Operation not permitted"):
        run_python("print('never')", QUICK)


async def test_async_runs_concurrently() -> None:
    results = await asyncio.gather(*(run_python_async(f"print({n} * 2)", QUICK) for n in range(3)))
    assert [r.stdout for r in results] == ["0\n", "2\n", "4\n"]
    assert all(r.ok for r in results)


def test_caller_is_fine_after_all_that() -> None:
    result = run_python("print(sum(range(10)))")
    assert result.ok and result.stdout == "45\n"
    assert os.geteuid() != 0 or sandbox_processes(result.uid) == []


@pytest.mark.parametrize("field", ["disk_mb", "shm_mb", "processes"])
def test_a_limit_of_zero_is_refused_by_name(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: 0})


def test_its_own_tmp_and_shm_start_empty_and_are_writable() -> None:
    code = (
        "import os\nown = os.path.basename(os.path.dirname(os.getcwd()))\n"  # its directory
        "for d in ('/tmp', '/var/tmp', '/dev/shm', '/run'):\n"
        "    print(d, [name for name in os.listdir(d) if name != own])\n"
        "open('/tmp/a', 'w').write('x')\nopen('/dev/shm/b', 'w').write('y')\nprint('written')"
    )
    result = run_python(code, QUICK)
    assert result.ok, result.summary()
    assert result.stdout.splitlines() == [
        "/tmp []",
        "/var/tmp []",
        "/dev/shm []",
        "/run []",
        "written",
    ]


def test_a_full_disk_is_named() -> None:
    code = (
        "with open('/tmp/big', 'wb') as f:\n    for _ in range(4):\n        f.write(b'x' * 2**20)"
    )
    limits = Limits(cpu_s=2, wall_s=10, file_mb=8, disk_mb=2)
    result = run_python(code, limits)
    assert not result.ok
    assert result.limit == "disk", result.summary()
    assert "disk quota" in result.summary()


@as_root
def test_wall_time_kills_every_process_of_the_run() -> None:
    """On a timeout the run's init is killed, and its PID namespace with it, daemons included."""
    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)"
    )
    result = run_python(code, Limits(wall_s=1))
    assert result.limit == "wall_time"
    assert result.uid is not None and sandbox_processes(result.uid) == []


def test_a_failing_init_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    failing = "import sys\nsys.stderr.write('sandbox-init: mount /tmp: Operation not permitted\\n')"
    monkeypatch.setattr(sandbox, "_INIT", failing + "\nsys.exit(1)")
    monkeypatch.setattr(sandbox, "_isolation_checked", False)
    with pytest.raises(SandboxUnavailable, match="mount /tmp: Operation not permitted"):
        run_python("print('never')", QUICK)
