"""`sale publish` as a user runs it: good lines reach the broker, bad ones are named."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from marketplace.bench.task_sets import from_dataset
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig
from marketplace.shared.posting import publish_one
from schemas.events import TaskChecks, TaskPosted
from schemas.topics import Topics
from tests.integration.inbox import Inbox
from tests.unit.test_publish import GOOD


async def test_publish_posts_good_lines_and_names_bad_ones(
    broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(GOOD) + "\n{oops\n" + json.dumps({**GOOD, "task_id": "t9"}) + "\n")
    config = tmp_path / "sale.toml"
    config.write_text(
        f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n'
        f"partitions = {broker_config.partitions}\n"
    )
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker_config.bootstrap}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketplace.app.cli",
            "--config",
            str(config),
            "publish",
            "--jsonl",
            str(tasks),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "line 2: not JSON" in result.stderr
    assert "posted 2 tasks, 1 bad lines" in result.stdout
    inbox = Inbox()
    reader = Bus(broker_config, producer="reader")
    reader.subscribe(["tasks", "checks"], "reader", inbox)
    async with reader:
        events = await inbox.wait_for(4)
    assert sorted(e.task_id for e in events if isinstance(e, TaskPosted)) == ["t1", "t9"]
    assert sorted(e.task_id for e in events if isinstance(e, TaskChecks)) == ["t1", "t9"]


async def test_a_posting_is_stamped_when_it_is_sent_not_when_it_was_parsed(
    broker_config: BrokerConfig,
) -> None:
    """A job parses all its tasks at the start and sends them over hours; the verifier gives
    up on checks an hour after their posting, so the posting's time must be the sending's."""
    [posting] = from_dataset("humaneval", 0, 1)
    parsed = posting.task.occurred_at
    inbox = Inbox()
    bus = Bus(broker_config, producer="client")
    bus.subscribe(["tasks", "checks"], "reader", inbox)
    async with bus:
        await bus.joined()
        await asyncio.sleep(0.05)
        await publish_one(bus, posting)
        events = await inbox.wait_for(2)
    assert all(e.occurred_at > parsed for e in events)
    assert {e.event_id for e in events} == {posting.task.event_id, posting.checks.event_id}
