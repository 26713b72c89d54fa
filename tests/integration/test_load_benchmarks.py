"""The load benchmarks run as a user runs them, signatures required: a command that prints
figures must keep working (both once stalled for want of keys, and nothing noticed)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from marketplace.shared.config import BrokerConfig
from tests.integration.test_stack import SALE

pytestmark = pytest.mark.integration


def sale(*args: str, broker: BrokerConfig) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap}
    env.pop("SALE_KEYRING", None)  # the benchmark makes its own keys, as on a user's machine
    env.pop("SALE_KEY_DIR", None)
    return subprocess.run(
        [*SALE, *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )


def test_a_small_flood_runs_both_rows_and_the_bounded_one_closes_nothing_bidless(
    broker_config: BrokerConfig,
) -> None:
    done = sale("loadtest", "--flood", "30", "--rate", "300", broker=broker_config)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "closed with no bid" in line]
    assert [row.split()[0] for row in rows] == ["no", "[admission]"]
    assert rows[1].split("[admission] defaults (2/agent)")[1].split()[0] == "0"


def test_the_ingest_benchmark_records_every_signed_event(broker_config: BrokerConfig) -> None:
    done = sale("ingest-bench", "--events", "300", broker=broker_config)
    assert done.returncode == 0, done.stderr
    assert "recorded: 300/300" in done.stderr + done.stdout
    assert "every decision verified" in done.stdout
    assert "every signature and decision verified" in done.stdout  # sale replay --verify's work
    assert "× raw" in done.stdout


def test_a_quick_sweep_prints_lean_and_paper_rows_their_roles_and_the_ratios(
    broker_config: BrokerConfig,
) -> None:
    done = sale(
        "loadtest",
        "--agent-counts",
        "2",
        "4",
        "--mechanism",
        "lean",
        "paper",
        "--quick",
        broker=broker_config,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("raw broker") for line in lines), done.stdout
    steps = [line.split()[0] for line in lines if "msg/s" in line and "CPU" in line]
    assert steps.count("paced") == 4 and steps[0] == "4", done.stdout  # 2 mechanisms × 2 counts
    table = [
        line.split("|")[1:-1]
        for line in lines
        if line.startswith("| lean") or line.startswith("| paper")
    ]
    assert [(row[0].strip(), row[1].strip()) for row in table] == [
        ("lean", "2"),
        ("lean", "4"),
        ("paper", "2"),
        ("paper", "4"),
    ], done.stdout
    lean_4, paper_4 = table[1], table[3]
    assert float(lean_4[4]) < float(paper_4[4]), done.stdout  # lean: fewer messages per auction
    assert lean_4[11].strip().endswith("%") and paper_4[11].strip() == "–", done.stdout
    assert "auctions/s at 4 agents ÷ at 2" in done.stdout
    assert "CPU of the agents never called, 4 agents" in done.stdout
    assert "% of the raw broker rate" in done.stdout
    assert "award p99 at half the saturation rate, 4 agents" in done.stdout
    assert "CPU by role" in done.stdout  # the method is said


def test_scaled_out_every_auction_is_decided_once_and_every_event_recorded_once(
    broker_config: BrokerConfig,
) -> None:
    done = sale("loadtest", "--scale-out", "20", broker=broker_config)
    assert done.returncode == 0, done.stderr
    lines = {line.split(":")[0]: line.split(":", 1)[1] for line in done.stdout.splitlines()}
    for where in ("AuctionClosed in Kafka", "AuctionClosed in Postgres"):
        assert lines[where].split()[0] == "20/20", done.stdout
        assert "(0 with more, 0 with none)" in lines[where], done.stdout
    counts = [int(word) for word in re.findall(r"\d+", lines["events"])]
    assert len(set(counts)) == 1 and counts[0] > 20 * 10, done.stdout
    closed_by = [int(n) for n in lines["auctions closed by each auctioneer process"].split(",")]
    assert len(closed_by) == 3 and sum(closed_by) == 21, done.stdout  # the warm-up's too
