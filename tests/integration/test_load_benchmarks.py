"""The load benchmarks run as a user runs them, signatures required: a command that prints
figures must keep working (both once stalled for want of keys, and nothing noticed)."""

from __future__ import annotations

import os
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
