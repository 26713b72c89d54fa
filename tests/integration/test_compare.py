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


PRICES = """
[small]
input = {small_in}
output = {small_out}

[large]
input = {large_in}
output = {large_out}
"""


def row(text: str, method: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip() for cell in line.split("|")[1:-1]]


async def test_a_price_list_in_another_currency_changes_the_costs_and_no_decision(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config's prices, then every price times 100,000 (a currency of far smaller units),
    each given as a price list: every cost is 100,000 times more, and every method, the lean
    auction deciding at each list's prices, takes the same decisions, so every ratio to
    always-large stays. (Whether the worth of a right answer scales with the prices is checked
    in tests/unit/test_prices.py: these scripted drafts never pass their examples, so the lean
    auction's choice here does not depend on it.)"""
    config = tmp_path / "sale.toml"
    config.write_text(CONFIG)
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    monkeypatch.chdir(tmp_path)  # a report at a price list's prices: docs/benchmark/prices/STEM
    argv = ["--config", str(config), "bench", "compare", "--train", "humaneval:2:4"]
    argv += ["--test", "humaneval:0:2", "--workers", "1"]
    argv += ["--archive", str(tmp_path / "none.jsonl.gz")]
    reports = {}
    for name, times in (("same", 1), ("smaller-units", 100_000)):
        prices = tmp_path / f"{name}.toml"
        given = {"small_in": 1.0, "small_out": 2.0, "large_in": 4.0, "large_out": 8.0}
        prices.write_text(PRICES.format(**{k: v * times for k, v in given.items()}))
        assert await asyncio.to_thread(main, [*argv, "--prices", str(prices)]) == 0
        reports[name] = (tmp_path / "docs/benchmark/prices" / name / "README.md").read_text()
        assert f"prices per million tokens from {prices}" in reports[name]
    for method in ("always small", "always large", "oracle", "SALE-lean"):
        before, after = row(reports["same"], method), row(reports["smaller-units"], method)
        cost = float(after[4].replace(",", ""))
        assert cost == pytest.approx(100_000 * float(before[4]), rel=0.01)
        assert (after[2], after[5], after[-1]) == (before[2], before[5], before[-1])
