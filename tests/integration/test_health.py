"""The containers' health checks against the real broker and the real Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.app.health import main
from marketplace.shared.config import BrokerConfig
from schemas.topics import Topics

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, broker: BrokerConfig, database_url: str) -> str:
    path = tmp_path / "sale.toml"
    path.write_text(
        f'[broker]\nbootstrap = "{broker.bootstrap}"\ntopic_prefix = "{broker.topic_prefix}"\n'
        f'[database]\nurl = "{database_url}"\n'
    )
    return str(path)


def test_a_broker_with_the_topics_and_a_database_that_answers_are_healthy(
    tmp_path: Path,
    broker_config: BrokerConfig,
    topics: Topics,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert (
        main(["--config", _config(tmp_path, broker_config, database_url), "broker", "database"])
        == 0
    )
    assert capsys.readouterr().out.splitlines() == [
        f"broker: ok: {broker_config.bootstrap} answers, with every topic",
        "database: ok: Postgres answers",
    ]


def test_a_broker_without_the_topics_is_unhealthy(
    tmp_path: Path,
    broker_config: BrokerConfig,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No service has created them yet, or the broker came back empty."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    count = len(Topics(broker_config.topic_prefix).every())
    assert main(["--config", _config(tmp_path, broker_config, database_url), "broker"]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"broker: FAILED: {broker_config.bootstrap} lacks {count} of the topics")
