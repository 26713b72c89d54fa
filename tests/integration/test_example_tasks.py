"""The example task files and the example script on a real marketplace (the broker, a lean
auctioneer, scripted agents, the real verifier), used as a user would: every file's task is
decided by its hidden checks, and `sale submit --file` and `examples/submit_coding.py` work from
a subfolder of the project with nothing exported (the config found upwards, the stack through
its endpoints file)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace import Client
from marketplace.shared import endpoints
from marketplace.shared.config import BrokerConfig
from marketplace.shared.posting import Posting
from schemas.topics import Topics
from tests.integration.test_client import marketplace
from tests.integration.test_lean_auctioneer import lean_config
from tests.unit.test_example_tasks import every_posting

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "examples" / "tasks"
CAPITAL = "Canberra"  # the right answer of examples/tasks/search.json, and all the agents say


def agents() -> list[ScriptedAgent]:
    return [
        ScriptedAgent("small", price=0.05, mechanism="lean", search_answer=CAPITAL),
        ScriptedAgent("large", price=0.36, mechanism="lean", search_answer=CAPITAL),
    ]


def renamed(posting: Posting, run: str) -> tuple:
    """The posting under a fresh id (an id is a task's for good)."""
    task_id = f"{posting.task.task_id}-{run}"
    task = posting.task.model_copy(update={"task_id": task_id})
    checks = posting.checks and posting.checks.model_copy(update={"task_id": task_id})
    return task, checks


async def test_every_example_task_is_decided_by_its_hidden_checks(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    config = lean_config(broker_config)
    run = uuid.uuid4().hex[:6]
    postings = every_posting()
    async with marketplace(config, *agents()), Client(config) as client:
        outcomes = await client.submit_many([renamed(p, run) for p in postings], concurrency=4)
    for posting, outcome in zip(postings, outcomes, strict=True):
        said = f"{posting.task.task_id}: {outcome.status} {outcome.detail}"
        if posting.task.kind == "general":
            assert outcome.status == "answered", said
        else:  # graded: the verifier ran the coding tests, matched the search answers
            assert outcome.status in ("passed", "failed") and outcome.passed is not None, said
    search = {p.task.task_id: o for p, o in zip(postings, outcomes, strict=True)}
    assert search["example-search-1"].status == "passed"  # the agents answer "Canberra"
    assert search["example-batch-3"].status == "failed"  # ... to "the largest planet" too


async def run_in(folder: Path, *argv: str) -> tuple[int, str, str]:
    """`argv` run in `folder` by a user who exported no broker and no config."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "SALE_CONFIG")}
    env["PYTHONPATH"] = str(ROOT)
    done = await asyncio.create_subprocess_exec(
        *argv, cwd=folder, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(done.communicate(), 180)
    return done.returncode, out.decode(), err.decode()


async def test_submit_and_the_example_script_work_from_a_subfolder_of_the_project(
    broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    """The project's sale.toml names the topics; its running stack's endpoints file, the
    broker. The user is two folders below, in another terminal."""
    folder = tmp_path / "project"
    below = folder / "src" / "deep"
    below.mkdir(parents=True)
    (folder / "sale.toml").write_text(f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n')
    (folder / ".sale").mkdir()
    config = lean_config(broker_config)
    run = uuid.uuid4().hex[:6]
    sale = [sys.executable, "-m", "marketplace.app.cli"]
    with endpoints.published(folder / ".sale", {"KAFKA_BOOTSTRAP": broker_config.bootstrap}):
        async with marketplace(config, *agents()):
            general = str(TASKS / "general.json")
            code, out, err = await run_in(
                below, *sale, "submit", "--file", general, "--id", f"g-{run}", "--wait"
            )
            assert code == 0, out + err
            assert out.startswith(f"task g-{run}: answered\n")
            coding = str(TASKS / "coding.json")
            code, out, err = await run_in(
                below, *sale, "submit", "--file", coding, "--id", f"c-{run}", "--wait"
            )
            assert out.startswith(f"task c-{run}: failed\n"), out + err  # a scripted draft
            assert "why: failed: exit code 1" in out  # the hidden tests ran on it
            example = str(ROOT / "examples" / "submit_coding.py")
            code, out, err = await run_in(below, sys.executable, example)
    assert code == 0, out + err
    lines = out.splitlines()
    assert [line.split("-")[:2] for line in lines] == [["HumanEval", n] for n in ("10", "11", "12")]
    assert all(": failed by " in line for line in lines)  # graded: scripted drafts fail HumanEval
