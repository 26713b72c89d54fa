"""`sale publish` as a user runs it: good lines reach the broker, bad ones are named."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from marketplace.evaluation.task_sets import from_dataset
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig
from marketplace.shared.posting import publish_one
from schemas.events import Event, TaskChecks, TaskPosted
from schemas.topics import Topics
from tests.integration.inbox import Inbox
from tests.samples import huge_task
from tests.unit.test_publish import GOOD


def sale_publish(
    broker_config: BrokerConfig, tmp_path: Path, lines: list[bytes]
) -> subprocess.CompletedProcess[str]:
    """Runs `sale publish --jsonl` on the lines, as a user would."""
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_bytes(b"\n".join(lines) + b"\n")
    config = tmp_path / "sale.toml"
    config.write_text(
        f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n'
        f"partitions = {broker_config.partitions}\n"
    )
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker_config.bootstrap}
    return subprocess.run(
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


async def posted(broker_config: BrokerConfig, count: int) -> list[Event]:
    """What reached the tasks and checks topics: `count` events, and then nothing more."""
    inbox = Inbox()
    reader = Bus(broker_config, producer="reader")
    reader.subscribe(["tasks", "checks"], "reader", inbox)
    async with reader:
        await inbox.wait_for(count)
        await asyncio.sleep(1.0)  # anything more would arrive now
    return [event for event, _ in inbox.events]


def task_ids(events: list[Event], kind: type) -> list[str]:
    return sorted(e.task_id for e in events if isinstance(e, kind))


async def test_publish_posts_good_lines_and_names_bad_ones(
    broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    lines = [json.dumps(x).encode() for x in (GOOD, {**GOOD, "task_id": "t9"})]
    result = sale_publish(broker_config, tmp_path, [lines[0], b"{oops", lines[1]])
    assert result.returncode == 1
    assert "line 2: not JSON" in result.stderr
    assert "posted 2 tasks, 1 bad lines" in result.stdout
    events = await posted(broker_config, 4)
    assert task_ids(events, TaskPosted) == task_ids(events, TaskChecks) == ["t1", "t9"]


async def test_bad_bytes_and_oversize_lines_are_named_and_nothing_of_them_is_sent(
    broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    """Issue 13: a line that is not UTF-8 posted nothing of the file and printed a traceback; a
    2 MB line sent its checks, failed on its task and stopped the run."""
    huge = huge_task().model_dump(mode="json", include={"task_id", "kind", "prompt", "inputs"})
    lines = [
        json.dumps(GOOD).encode(),
        b'{"task_id": "caf\xe9"}',
        json.dumps({**huge, "checks": GOOD["checks"]}).encode(),
        json.dumps({**GOOD, "task_id": "t9"}).encode(),
    ]
    result = sale_publish(broker_config, tmp_path, lines)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    assert "line 2: not UTF-8: byte 17 is 0xe9" in result.stderr
    assert "line 3: TaskPosted: 2,0" in result.stderr
    assert "over the record cap of 1,000,000 bytes" in result.stderr
    assert "posted 2 tasks, 2 bad lines" in result.stdout
    events = await posted(broker_config, 4)
    assert task_ids(events, TaskPosted) == task_ids(events, TaskChecks) == ["t1", "t9"]


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
