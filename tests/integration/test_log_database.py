"""Every command that reads the log finds the database `sale run` records into, from whichever
directory it runs: with no database URL, the embedded Postgres in the config file's
`data_dir`, relative to that file. An empty log is one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.shared.config import BrokerConfig, load_config
from marketplace.shared.database import log_database
from schemas.topics import Topics
from tests.integration.test_recorder import recording, wait_for_lag_zero
from tests.integration.test_replay import run_auctions

pytestmark = pytest.mark.integration

SALE = [sys.executable, "-m", "marketplace.app.cli"]


def sale(config: Path, cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`sale` run from `cwd`, with no DATABASE_URL unless given."""
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [*SALE, "--config", str(config), *argv],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A config file whose database is embedded, in `pg` next to it; and that server's URL
    while it runs (as `sale run` starts it: `log_database`)."""
    folder = tmp_path / "project"
    folder.mkdir()
    config = folder / "sale.toml"
    config.write_text('[database]\ndata_dir = "pg"\n')
    with log_database(load_config(config, env={}).database) as url:
        yield config, url


async def test_log_commands_find_the_embedded_database_from_anywhere(
    project: tuple[Path, str], broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    config, url = project
    async with recording(broker_config, url) as recorder:
        closed = await run_auctions(broker_config)
        await wait_for_lag_zero(broker_config, topics, lambda: not recorder.done())
    first = next(iter(closed))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    verified = sale(config, elsewhere, "replay", "--verify")
    assert verified.returncode == 0, verified.stderr
    assert "replayed 3 closed auctions from postgres: every decision verified" in verified.stdout
    story = sale(config, elsewhere, "audit", first)
    assert story.returncode == 0, story.stderr
    assert "winner: small with bid small:1 (refined)" in story.stdout
    report = sale(config, elsewhere, "report")
    assert report.returncode == 0, report.stderr
    assert all(f"| {task_id} |" in report.stdout for task_id in closed)
    assert not (elsewhere / "pg").exists()  # not a second, empty database here


async def test_an_empty_log_is_one_line_for_every_command(
    fresh_database: str, tmp_path: Path
) -> None:
    config = tmp_path / "sale.toml"
    config.write_text("")
    for argv in (["report"], ["replay", "--verify"], ["audit", "HumanEval-0"]):
        done = sale(config, tmp_path, *argv, DATABASE_URL=fresh_database)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(f"sale {argv[0]}: the database holds no event log yet: "), line
