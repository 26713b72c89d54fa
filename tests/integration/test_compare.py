"""`sale bench compare`: the whole comparison on a split in one command, on the real Postgres,
with scripted agents (tests only): the matrix is filled by worker processes, then every method,
SALE-lean and its target check included, is written to the report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from marketplace.app.cli import main

CONFIG = """
[auction]
mechanism = "lean"

[auction.lean]
value = 10.0

[auction.lean.priors.small]
examples_pass = 0.5
right_if_pass = 0.9
right_if_fail = 0.05
cost = 0.001

[auction.lean.priors.large]
examples_pass = 0.7
right_if_pass = 0.95
right_if_fail = 0.1
cost = 0.004

[[agents]]
id = "small"
backend = "scripted"
model = "scripted-small"
input_price = 1.0
output_price = 2.0

[[agents]]
id = "large"
backend = "scripted"
model = "scripted-large"
input_price = 4.0
output_price = 8.0
"""


async def test_one_command_compares_every_method_on_a_split(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "sale.toml"
    config.write_text(CONFIG)
    out = tmp_path / "report"
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    argv = ["--config", str(config), "bench", "compare", "--train", "humaneval:2:4"]
    argv += ["--test", "humaneval:0:2", "--workers", "1", "--out", str(out)]
    argv += ["--archive", str(tmp_path / "none.jsonl.gz")]
    assert await asyncio.to_thread(main, argv) == 0
    text = (out / "README.md").read_text()
    for method in ("always large", "oracle", "kNN router", "SALE-paper round 0", "SALE-lean"):
        assert f"| {method} |" in text
    assert "Target for SALE-lean" in text and (out / "cost_vs_pass.png").exists()
