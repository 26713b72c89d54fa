"""`sale serve` (its own process, as a user runs it) with no broker at its address: every
request is a 503 `unavailable` naming the address, at once (the client's 10 s timeout would
end a wait of the Kafka client's 40 s), one warning line in its log and no traceback; once a
broker listens there, the door reaches it by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from marketplace.shared.config import BrokerConfig, Config, ServeConfig, to_toml
from marketplace.shared.local_broker import LocalBroker, free_port
from tests.integration.test_front_door import ROOT, _until_up

pytestmark = pytest.mark.integration
ASK = [{"role": "user", "content": "Anyone there?"}]


@pytest.fixture
def nowhere() -> BrokerConfig:
    """A broker address where nothing listens (yet)."""
    return BrokerConfig(bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="away.")


@pytest.fixture
def door(nowhere: BrokerConfig, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`sale serve` against `nowhere`: its base URL and its log."""
    config = Config(broker=nowhere, serve=ServeConfig(port=free_port(), timeout_s=3))
    path = tmp_path / "sale.toml"
    path.write_text(to_toml(config))
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "marketplace.app.cli", "--config", str(path), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{config.serve.port}", log_path, process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_with_the_broker_away_the_door_says_503_unavailable_and_recovers(
    door: tuple[str, Path, subprocess.Popen], nowhere: BrokerConfig, tmp_path: Path
) -> None:
    base, log_path, process = door
    await _until_up(base, process, log_path)  # it serves without a broker
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=10)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="sale", messages=ASK)
        assert raised.value.status_code == 503
        assert raised.value.code == "unavailable"
        assert nowhere.bootstrap in raised.value.message
    log = log_path.read_text()
    assert "Traceback" not in log
    away = [line for line in log.splitlines() if "does not answer" in line]
    assert len(away) == 1, log  # one line per absence, not one per request

    port = int(nowhere.bootstrap.rpartition(":")[2])
    with LocalBroker(port=port, log_path=tmp_path / "tansu.log"):
        # No auctioneer here: the task is posted and nothing decides it, so the answer is the
        # door's own timeout (3 s), a 504 that only a reachable broker gives.
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="sale", messages=ASK)
        assert raised.value.status_code == 504, raised.value.message
        assert raised.value.code == "timeout"
    with pytest.raises(openai.APIStatusError) as raised:  # gone again, while serving
        await client.chat.completions.create(model="sale", messages=ASK)
    assert (raised.value.status_code, raised.value.code) == (503, "unavailable")
    log = log_path.read_text()
    assert "Traceback" not in log
    assert len([line for line in log.splitlines() if "does not answer" in line]) == 2, log
