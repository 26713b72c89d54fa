"""The main job as a user runs it (`sale run`), with scripted agents (the deterministic test
backend) instead of models: real processes, the real broker and the real Postgres. Its final
table must be exactly what `sale report` computes from the log."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from marketplace.log.summary import run_report

SALE = [sys.executable, "-m", "marketplace.app.cli"]


def job_config(path: Path) -> Path:
    prefix = f"job{uuid.uuid4().hex[:8]}."
    agents = "".join(
        f'[[agents]]\nid = "{agent}"\nbackend = "scripted"\nmodel = "scripted-{agent}"\n'
        f"input_price = {price}\noutput_price = {price}\nheartbeat_s = 1\n"
        for agent, price in (("S", 1.0), ("L", 4.0))
    )
    path.write_text(
        f'[broker]\ntopic_prefix = "{prefix}"\npartitions = 2\n'
        "session_timeout_ms = 2000\nheartbeat_interval_ms = 300\nfetch_max_wait_ms = 10\n"
        "[auction]\nbid_window_s = 20\njury_window_s = 20\nrefine_window_s = 20\n"
        '[stack]\nservices = ["auctioneer", "recorder", "verifier"]\n' + agents
    )
    return path


@pytest.mark.timeout(240)
async def test_the_main_job_runs_tasks_to_outcomes_and_reports_from_the_log(
    tmp_path: Path, kafka_bootstrap: str, fresh_database: str
) -> None:
    config = job_config(tmp_path / "sale.toml")
    env = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "DATABASE_URL": fresh_database, "PATH": "/usr/bin"}
    command = [
        *SALE,
        "--config",
        str(config),
        "run",
        "--tasks",
        "humaneval:0:3",
        "--run-dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout + done.stderr
    for task in ("HumanEval-0", "HumanEval-1", "HumanEval-2"):
        assert f"{task}: posted" in done.stdout
        assert f"{task}: failed" in done.stdout  # scripted code never passes the hidden tests
    # the next task is posted only once the previous one's outcome is in (the memory has it)
    out = done.stdout
    assert out.index("HumanEval-0: failed") < out.index("HumanEval-1: posted")
    assert out.index("HumanEval-1: failed") < out.index("HumanEval-2: posted")
    conn = await asyncpg.connect(fresh_database)
    try:
        report = await run_report(conn, ["HumanEval-0", "HumanEval-1", "HumanEval-2"])
    finally:
        await conn.close()
    assert report in done.stdout
    assert "| 3 | 0 | 0.0% |" in report
    assert (tmp_path / "agent.S.log").exists()  # the children's output went to the run dir

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=200)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already done in this log, not posted again: 3 task(s)" in again.stdout
    assert "posted" not in again.stdout.replace("not posted again", "")
    assert report in again.stdout  # the same table: nothing was counted twice
