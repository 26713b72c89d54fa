"""`sale bench frontier` on a fresh Postgres from the archive alone (no model, no earlier
matrix): a slice of both evaluation splits at this machine's prices and at a tenth, written as
a page and a plot."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from marketplace.app.cli import main

ROOT = Path(__file__).parents[2]


async def test_the_frontier_runs_from_the_archive_alone(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    out = tmp_path / "frontier"
    argv = ["--config", str(ROOT / "sale.toml"), "bench", "frontier", "--train", "mbpp:0:30"]
    argv += ["--test", "humaneval:0:20", "mbpp:200:220", "--ratios", "0.1", "--out", str(out)]
    argv += ["--archive", str(ROOT / "archive" / "benchmark.jsonl.gz")]
    assert await asyncio.to_thread(main, argv) == 0
    page = (out / "README.md").read_text()
    assert "## humaneval:0:20 (20 tasks)" in page and "## mbpp:200:220 (20 tasks)" in page
    assert (out / "frontier.png").stat().st_size > 10_000
    assert "not replayed" not in page  # the archive holds every draft the lean replay asks for
    for split in ("humaneval:0:20", "mbpp:200:220"):
        section = page.split(f"## {split}")[1].split("##")[0]
        rows = [line for line in section.splitlines() if re.match(r"\| \d", line)]
        assert len(rows) == 2 and rows[1].startswith("| 0.100 |")
        assert "this machine's prices" in rows[0]
        lean = [float(row.split("|")[5].split("·")[1].split()[0]) for row in rows]
        assert lean[1] < lean[0]  # M's drafts a tenth of L's: SALE-lean pays less
