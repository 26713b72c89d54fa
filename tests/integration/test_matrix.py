"""The benchmark matrix on the real Postgres, with the scripted LLM backend (tests only): two
workers fill it (drafts, escalations where the cheaper draft fails, bids and reviews) without
doing any item twice, a rerun does nothing, and a matrix rebuilt after its cells are lost
answers every model call from the completion cache."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from marketplace.evaluation import matrix, task_sets
from marketplace.shared.config import Config
from marketplace.shared.database import create_database, drop_database
from marketplace.shared.migrate import apply_migrations

TASKS = ["humaneval:0:2"]


def scripted_config(url: str) -> Config:
    agents = [
        {
            "id": agent,
            "backend": "scripted",
            "model": f"scripted-{agent}",
            "input_price": p,
            "output_price": p,
        }
        for agent, p in (("small", 1.0), ("large", 4.0))
    ]
    return Config.model_validate({"database": {"url": url}, "agents": agents})


async def fill(config: Config, workers: int) -> list[int]:
    plan = matrix.make_plan(config, TASKS, TASKS, ["small:large"])
    name = matrix.fingerprint(config.agents)
    conns = [await asyncpg.connect(config.database.url) for _ in range(workers)]
    try:
        await apply_migrations(conns[0])
        workers_ = [matrix.Worker(config, name, plan, conn) for conn in conns]
        try:
            return await asyncio.gather(*(w.run() for w in workers_))
        finally:
            for worker in workers_:
                await worker.close()
    finally:
        for conn in conns:
            await conn.close()


async def test_two_workers_fill_the_matrix_once_and_a_rerun_does_nothing(
    fresh_database: str,
) -> None:
    config = scripted_config(fresh_database)
    computed = await fill(config, workers=2)
    # tasks × (agents × (draft, bid, judge) + one escalation: the scripted draft fails)
    assert sum(computed) == 2 * (2 * 3 + 1)
    built = await matrix.load_split(config, TASKS)
    assert built.complete_tasks(plans=True) == ("HumanEval-0", "HumanEval-1")
    cell = built.cell("HumanEval-0", "small")
    escalated = built.escalation("HumanEval-0", "large", "small")
    assert escalated is not None and escalated.result.agent_id == "large"
    assert {s.bid_id for s in cell.review.scores} == {
        built.cell("HumanEval-0", a).bid.bid_id for a in ("small", "large")
    }
    assert cell.outcome.passed is False and cell.self_check is False  # scripted code is wrong
    assert await fill(config, workers=1) == [0]


async def test_lost_cells_are_rebuilt_from_the_completion_cache(fresh_database: str) -> None:
    config = scripted_config(fresh_database)
    await fill(config, workers=1)
    conn = await asyncpg.connect(fresh_database)
    try:
        calls = await conn.fetchval("SELECT count(*) FROM completions")
        before = await conn.fetch("SELECT task_id, agent_id, kind, event FROM matrix_cells")
        await conn.execute("DELETE FROM matrix_cells")
        await fill(config, workers=1)
        assert await conn.fetchval("SELECT count(*) FROM completions") == calls  # no new call
        after = await conn.fetch("SELECT task_id, agent_id, kind FROM matrix_cells")
    finally:
        await conn.close()
    assert {tuple(r.values())[:3] for r in before} == {tuple(r.values()) for r in after}


def test_the_matrix_name_ignores_prices_but_not_prompt_limits_or_the_executor() -> None:
    config = scripted_config("postgresql://unused")
    cheaper = [a.model_copy(update={"input_price": 0.5}) for a in config.agents]
    shorter = [a.model_copy(update={"max_plan_tokens": 50}) for a in config.agents]
    other_executor = [a.model_copy(update={"executor": "chat"}) for a in config.agents]
    cached = [
        a.model_copy(update={"cache": True, "cache_url": "postgresql://x"}) for a in config.agents
    ]
    general = [
        a.model_copy(update={"kinds": [*a.kinds, "general"]}) for a in config.agents
    ]  # general requests are never in the matrix
    assert matrix.fingerprint(cheaper) == matrix.fingerprint(config.agents)
    assert matrix.fingerprint(cached) == matrix.fingerprint(config.agents)
    assert matrix.fingerprint(general) == matrix.fingerprint(config.agents)
    assert matrix.fingerprint(shorter) != matrix.fingerprint(config.agents)
    assert matrix.fingerprint(other_executor) != matrix.fingerprint(config.agents)


def test_a_bad_task_set_is_named() -> None:
    with pytest.raises(ValueError, match="humaneval-0-2"):
        task_sets.parse_task_sets(["humaneval-0-2"])


async def test_the_archive_carries_the_matrix_to_another_database(
    fresh_database: str, database_server: str, tmp_path
) -> None:
    from marketplace.evaluation import archive

    config = scripted_config(fresh_database)
    await fill(config, workers=1)
    path = tmp_path / "archive.jsonl.gz"
    conn = await asyncpg.connect(fresh_database)
    try:
        counts = await archive.export(conn, path)
    finally:
        await conn.close()
    other = await create_database(database_server, prefix="sale_archive")
    try:
        conn = await asyncpg.connect(other)
        try:
            assert await archive.restore(conn, path) == counts
            assert await archive.restore(conn, path) == {"completions": 0, "matrix_cells": 0}
        finally:
            await conn.close()
        moved = scripted_config(other)
        assert await matrix.load_split(moved, TASKS) == await matrix.load_split(config, TASKS)
        assert await fill(moved, workers=1) == [0]  # nothing left to compute
    finally:
        await drop_database(database_server, other)


async def test_a_split_with_no_complete_task_names_the_command_that_fills_it(
    fresh_database: str,
) -> None:
    config = scripted_config(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    with pytest.raises(matrix.EmptySplit, match=r"run `sale bench matrix --tasks humaneval:0:2`"):
        await matrix.load_split(config, TASKS)
