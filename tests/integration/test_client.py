"""The front door on the real broker and Postgres: a client posts tasks and gets their answers.

A lean auctioneer, scripted agents (their drafts are `def f(): return None`), the real verifier
(the sandbox runs the hidden tests) and the recorder; the client waits for each answer, and
reads it back from the log later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from agents.scripted_agent import ScriptedAgent
from marketplace import Client, Outcome, Refused, SubmitTimeout
from marketplace.client import InvalidTask, lookup
from marketplace.log import audit, replay
from marketplace.log.ledger import PostgresLedger
from marketplace.log.outcomes import fold
from marketplace.log.replay.readers import read_postgres
from marketplace.log.store import load_events
from marketplace.shared.config import BrokerConfig, Config, TenantConfig
from marketplace.shared.migrate import apply_migrations
from marketplace.shared.offsets import highwater_marks
from marketplace.shared.signing import Trust
from schemas.events import CodingChecks, CodingInputs, TaskChecks, TaskOutcome, TaskPosted
from schemas.topics import Topics
from tests.integration.test_auctioneer import Market
from tests.integration.test_lean_auctioneer import lean_config
from tests.integration.test_recorder import publish, recording
from tests.integration.test_report import append, task_events
from tests.integration.test_verifier import verifying

pytestmark = pytest.mark.integration

RIGHT = "assert f() is None"  # the scripted draft returns None
WRONG = "assert f() == 1"


def coding(task_id: str, tests: str = RIGHT) -> tuple[TaskPosted, TaskChecks]:
    task = TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt="Write f, which returns nothing.",
        inputs=CodingInputs(entry_point="f", examples=[RIGHT]),
    )
    checks = TaskChecks(
        producer="client", task_id=task_id, checks=CodingChecks(entry_point="f", tests=tests)
    )
    return task, checks


@contextlib.asynccontextmanager
async def marketplace(config: Config, *agents: ScriptedAgent) -> AsyncIterator[Market]:
    """A lean auctioneer (reading tenants' spend from the log when there is one), the agents
    and a verifier, running until the block ends."""
    url = config.database.url
    ledger = PostgresLedger(url) if url else None
    try:
        async with Market(config) as m, verifying(config.broker):
            for agent in agents:
                await m.agent(agent)
            await m.auctioneer(ledger=ledger)
            yield m
    finally:
        if ledger is not None:
            await ledger.close()


def with_database(config: Config, url: str, **tenants: float) -> Config:
    return config.model_copy(
        update={
            "database": config.database.model_copy(update={"url": url}),
            "tenants": {name: TenantConfig(budget=b) for name, b in tenants.items()},
        }
    )


def agents() -> list[ScriptedAgent]:
    return [
        ScriptedAgent("small", price=0.05, mechanism="lean"),
        ScriptedAgent("large", price=0.36, mechanism="lean"),
    ]


async def test_a_submitted_task_comes_back_passed_with_its_winner_and_cost(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    config = lean_config(broker_config)
    async with marketplace(config, *agents()), Client(config) as client:
        task, checks = coding("client-pass")
        outcome = await client.submit(task, checks, timeout_s=60)
        assert (outcome.status, outcome.passed, outcome.winner_agent_id) == (
            "passed",
            True,
            "small",
        )
        assert outcome.model == "scripted-small" and outcome.mechanism == "lean"
        assert outcome.output.startswith("# scripted draft of small")
        # small's draft: its prompt and generated tokens at 0.05 per million, delivered free
        usage = outcome.usage
        assert usage.requests == 1 and usage.prompt_tokens > 0 and usage.completion_tokens > 0
        assert outcome.cost == pytest.approx(0.05 * usage.total_tokens / 1_000_000)

        wrong, failing = coding("client-fail", WRONG)
        [failed, passed] = await client.submit_many(
            [(wrong, failing), coding("client-pass-2")], concurrency=2
        )
        assert (failed.task_id, failed.status, failed.passed) == ("client-fail", "failed", False)
        assert "AssertionError" in failed.detail
        assert (passed.task_id, passed.status) == ("client-pass-2", "passed")

        later = await client.result("client-pass")  # read back from the topics
        assert later == outcome
        assert await client.result("never-posted") is None

        again, _ = coding("client-pass")  # an id already taken: refused at once, not waited on
        with pytest.raises(Refused, match="client-pass was already posted"):
            await client.submit(again, checks, timeout_s=60)


async def test_a_posted_task_is_not_waited_for_and_its_answer_is_read_back_later(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    config = lean_config(broker_config)
    async with marketplace(config, *agents()), Client(config) as client:
        task, checks = coding("client-posted")
        async with asyncio.timeout(5):  # fire and forget: back as soon as the broker has it
            assert await client.post(task, checks) == "client-posted"
        async with asyncio.timeout(60):
            while (later := await client.result("client-posted")) is None or not later.final:
                await asyncio.sleep(0.2)
    assert (later.status, later.winner_agent_id) == ("passed", "small")


async def test_a_task_nobody_decides_times_out_naming_the_missing_step(
    broker_config: BrokerConfig, topics: Topics
) -> None:
    config = lean_config(broker_config)
    async with Client(config) as client:  # no auctioneer, no agent
        task, checks = coding("client-late")
        with pytest.raises(SubmitTimeout) as late:
            await client.submit(task, checks, timeout_s=1.0)
    assert late.value.task_id == "client-late"
    assert "no answer within 1 s: the auction has not closed" in str(late.value)
    assert late.value.outcome == Outcome(
        task_id="client-late", status="posted", kind="coding", tenant="default"
    )
    with pytest.raises(InvalidTask, match="a coding task needs its checks"):
        await client.submit(task, None)


async def test_the_outcome_is_read_back_from_the_postgres_log(
    broker_config: BrokerConfig, topics: Topics, fresh_database: str
) -> None:
    config = with_database(lean_config(broker_config), fresh_database)
    async with (
        recording(broker_config, fresh_database),
        marketplace(config, *agents()),
        Client(config) as client,
    ):
        task, checks = coding("client-logged")
        outcome = await client.submit(task, checks, timeout_s=60)
        async with asyncio.timeout(30):  # the recorder appends a moment after the answer
            while (logged := await in_postgres(fresh_database, task.task_id)) != outcome:
                await asyncio.sleep(0.1)
        assert await client.result(task.task_id) == logged
    assert logged.status == "passed" and logged.winner_agent_id == "small"


async def in_postgres(database: str, task_id: str) -> Outcome | None:
    """What the Postgres log alone says of the task (`Client.result` reads it first)."""
    conn = await asyncpg.connect(database)
    try:
        if await conn.fetchval("SELECT to_regclass('events')") is None:
            return None
        return fold(task_id, [row.event for row in await load_events(conn, task_id)])
    finally:
        await conn.close()


async def test_a_general_prompt_is_answered_by_the_likeliest_right_agent_and_replays(
    broker_config: BrokerConfig, topics: Topics, fresh_database: str
) -> None:
    # The fitted priors are for code, not used here: every agent has the general prior, so
    # the likeliest right (`[auction] uncheckable`'s default) is a tie, to the dearer: large.
    config = lean_config(broker_config)
    async with (
        recording(broker_config, fresh_database),
        marketplace(config, *agents()),
        Client(config) as client,
    ):
        outcome = await client.ask("Name three prime numbers.", tenant="acme", timeout_s=60)
        async with asyncio.timeout(30):
            while await in_postgres(fresh_database, outcome.task_id) != outcome:
                await asyncio.sleep(0.1)
    assert (outcome.status, outcome.passed, outcome.score) == ("answered", None, None)
    assert (outcome.kind, outcome.tenant, outcome.winner_agent_id) == ("general", "acme", "large")
    assert outcome.output == "scripted answer of large"
    assert outcome.detail == "a general task: nothing to check the answer against"
    log = await read_postgres(fresh_database)
    assert replay.verify(log.events) == []
    story = audit.render(await audit.load(fresh_database, outcome.task_id))
    first = "  1. ask large: no example to check a draft against: the likeliest right, large"
    assert first in story and "     draft: an answer" in story
    assert "outcome: answered: a general task: nothing to check" in story
    conn = await asyncpg.connect(fresh_database)
    try:
        row = await conn.fetchrow(
            "SELECT passed, score FROM outcomes WHERE task_id = $1", outcome.task_id
        )
    finally:
        await conn.close()
    assert (row["passed"], row["score"]) == (None, None)


SPENT = (
    "SELECT coalesce(sum(s.cost), 0) FROM spend s JOIN auctions a USING (task_id) "
    "WHERE a.tenant = $1"
)


async def test_a_tenant_over_its_budget_is_refused_and_the_refusal_is_in_the_log(
    broker_config: BrokerConfig, topics: Topics, fresh_database: str
) -> None:
    # A general answer, sent to the cheapest (`[auction] uncheckable`): small is asked, expected
    # to cost 100 tokens at 0.05 per million (5e-06), and spends what its answer took: of
    # acme's 5.5e-06, less than 5e-06 is left.
    budget = 5.5e-6
    cheapest = lean_config(broker_config)
    cheapest = cheapest.model_copy(
        update={"auction": cheapest.auction.model_copy(update={"uncheckable": "cheapest"})}
    )
    config = with_database(cheapest, fresh_database, acme=budget)
    async with (
        recording(broker_config, fresh_database),
        marketplace(config, *agents()),
        Client(config) as client,
    ):
        first = await client.ask("Name a prime.", tenant="acme", timeout_s=60)
        spent = first.cost
        assert first.status == "answered" and budget - 5e-6 < spent < budget
        async with asyncio.timeout(30):  # the ledger reads the log, which the recorder keeps
            while await fetch_value(fresh_database, SPENT, "acme") < spent * 0.999:
                await asyncio.sleep(0.1)
        with pytest.raises(Refused) as refused:
            await client.ask("Name another prime.", tenant="acme", timeout_s=60)
        other = await client.ask("Name a prime.", tenant="other", budget=1.0, timeout_s=60)
        with pytest.raises(Refused) as too_little:
            await client.ask("And another.", tenant="other", budget=1e-6, timeout_s=60)
        task_id = refused.value.task_id
        async with asyncio.timeout(30):
            while (await in_postgres(fresh_database, task_id)) != refused.value.outcome:
                await asyncio.sleep(0.1)
    assert refused.value.reason == "over_budget"
    assert refused.value.detail == (
        f"tenant acme has spent {spent:.6g} of its budget {budget:.6g}; {budget - spent:.6g} is "
        "left, and the cheapest live agent, small, is expected to cost 5e-06"
    )
    assert str(refused.value).startswith(f"task {task_id} refused: over_budget: tenant acme")
    assert other.status == "answered"  # another tenant, no limit of its own but its budget
    assert too_little.value.detail.startswith("the task's budget 1e-06 cannot cover even")
    reason = "SELECT reason FROM auctions WHERE task_id = $1"
    assert await fetch_value(fresh_database, reason, task_id) == "over_budget"
    log = await read_postgres(fresh_database)
    assert replay.verify(log.events) == []
    story = audit.render(await audit.load(fresh_database, task_id))
    assert (
        f"refused (over_budget): tenant acme has spent {spent:.6g} of its budget 5.5e-06" in story
    )


async def fetch_value(database: str, query: str, *args: object) -> object:
    conn = await asyncpg.connect(database)
    try:
        if await conn.fetchval("SELECT to_regclass('spend')") is None:
            return 0.0
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def sale(broker: BrokerConfig, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """`sale ARGS` as a user runs it against this test's broker (the loop keeps serving the
    marketplace meanwhile): exit code, output, errors."""
    config = tmp_path / "sale.toml"
    config.write_text(f'[broker]\ntopic_prefix = "{broker.topic_prefix}"\n')
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker.bootstrap}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "marketplace.app.cli", "--config", str(config), *args]
    done = await asyncio.create_subprocess_exec(*command, env=env, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(done.communicate(), 120)
    return done.returncode, out.decode(), err.decode()


async def test_sale_submit_waits_for_the_answer_and_sale_result_reads_it_back(
    broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    config = lean_config(broker_config)
    async with marketplace(config, *agents()):
        code, out, err = await sale(
            broker_config, tmp_path, "submit", "--prompt", "Name a prime.", "--wait"
        )
        assert code == 0, out + err
        first = out.splitlines()[0]
        assert first.startswith("task ask-") and first.endswith(": answered")
        assert "winner: large (scripted-large), lean auction" in out  # `uncheckable` likeliest
        assert out.endswith("output:\nscripted answer of large\n")
        task_id = first.removeprefix("task ").removesuffix(": answered")
        code, out, err = await sale(broker_config, tmp_path, "submit", "--prompt", "Name one.")
        assert code == 0, out + err
        posted = out.split()[2].removesuffix(";")  # "posted task ID; its answer: sale result ID"
        assert out == f"posted task {posted}; its answer: sale result {posted}\n"
        async with asyncio.timeout(60):
            while "answered" not in (await sale(broker_config, tmp_path, "result", posted))[1]:
                await asyncio.sleep(0.5)
        code, again, err = await sale(broker_config, tmp_path, "result", task_id, "--json")
    assert code == 0, again + err
    assert Outcome.model_validate_json(again).output == "scripted answer of large"
    code, _, err = await sale(broker_config, tmp_path, "submit", "--prompt", "x", "--budget", "-1")
    assert (code, err) == (2, "sale submit: budget: Input should be greater than or equal to 0\n")
    code, _, err = await sale(
        broker_config, tmp_path, "submit", "--prompt", "x", "--kind", "coding"
    )
    assert code == 2 and "a coding task needs its inputs and hidden checks" in err
    code, _, err = await sale(broker_config, tmp_path, "result", "never-posted")
    assert (code, err) == (1, "sale result: no task 'never-posted' in the log\n")


async def test_ctrl_c_while_submit_waits_names_the_task_and_how_to_follow_it(
    broker_config: BrokerConfig, topics: Topics, tmp_path: Path
) -> None:
    """Nobody answers (no market runs): `sale submit --wait` waits until Ctrl-C, then says the
    task's id and how to follow it, with the shell's status for an interrupt, no traceback."""
    config = tmp_path / "sale.toml"
    config.write_text(f'[broker]\ntopic_prefix = "{broker_config.topic_prefix}"\n')
    env = {**os.environ, "KAFKA_BOOTSTRAP": broker_config.bootstrap}
    env.pop("DATABASE_URL", None)
    argv = ["--config", str(config), "submit", "--prompt", "Name a prime.", "--id", "ctrl-c-1"]
    command = [sys.executable, "-m", "marketplace.app.cli", *argv, "--wait"]
    waiting = await asyncio.create_subprocess_exec(*command, env=env, stdout=PIPE, stderr=PIPE)
    try:
        async with asyncio.timeout(60):  # the task is in the market: the client now waits
            while not sum(
                (await highwater_marks(broker_config.bootstrap, [topics.tasks])).values()
            ):
                await asyncio.sleep(0.2)
        waiting.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(waiting.communicate(), 60)
    finally:
        if waiting.returncode is None:
            waiting.kill()
            await waiting.wait()
    assert waiting.returncode == 130, out.decode() + err.decode()
    assert err.decode() == (
        "sale submit: interrupted; task ctrl-c-1 goes on without waiting: `sale result "
        "ctrl-c-1` shows what became of it, `sale audit ctrl-c-1` its story\n"
    )


async def test_result_says_what_wait_said_while_the_recorder_lags(
    broker_config: BrokerConfig, topics: Topics, fresh_database: str
) -> None:
    """Right after `--wait` said `answered`, the recorder may hold the award and not yet the
    answer: `result` completes what Postgres holds from the topics, so it says `answered` too
    (it said `awarded`)."""
    events = task_events("lagging-1", "S", None, executed=1_000)  # a general task, answered
    recorded, outcome = events[:-2], events[-1]  # not yet recorded: the result and outcome
    assert isinstance(outcome, TaskOutcome) and outcome.passed is None
    await publish(broker_config, events)
    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
        await append(conn, recorded)  # the recorder's part so far: up to the award
    finally:
        await conn.close()
    waited = fold("lagging-1", events)
    assert waited is not None and waited.status == "answered"
    config = with_database(lean_config(broker_config), fresh_database)
    later = await lookup.result(config, "lagging-1", trust=Trust())
    assert later is not None and later.status == "answered"
    assert later == waited  # the same fold of the same events: the same outcome
