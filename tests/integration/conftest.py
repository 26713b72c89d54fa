"""Shared fixtures: the real broker and the real Postgres, and per-test isolation on both.

The broker is the one at $KAFKA_BOOTSTRAP, else a Tansu started for this run. Postgres is
$DATABASE_URL, else the server on 127.0.0.1:5432, else an embedded one; either way each run
gets a fresh database, dropped at the end. Each test gets its own topic prefix (so its own
topics) and its own schema.

Nothing the run starts outlives it: the broker is killed by the kernel should pytest die
(`LocalBroker`), every `sale` process a test starts asks for the same (`SALE_EXIT_WITH_PARENT`,
set for the whole run), and whatever a failed test left running is stopped when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from marketplace.shared import children, signing
from marketplace.shared.admin import ensure_topics
from marketplace.shared.config import BrokerConfig, SecurityConfig
from marketplace.shared.database import create_database, drop_database, resolve_server
from marketplace.shared.keyfiles import ensure_keys, new_key, private_path, trust_of
from marketplace.shared.local_broker import LocalBroker
from schemas.topics import Topics

# The services keep their real roles; any other principal a test names (a client that posts
# every kind of event, a watcher, an agent) gets a key on first use that may produce anything.
SERVICE_ROLES = {name: name for name in ("auctioneer", "verifier", "recorder", "monitor")}
LEFT_STOP_S = 6.0  # a process left by a test: SIGTERM, this long to stop, then SIGKILL


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module is imported (they copy the environment): every `sale` process
    started from here on is signalled by the kernel when the process that started it dies."""
    os.environ[children.EXIT_WITH_PARENT] = "1"


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running() -> Iterator[None]:
    """At the end of the run, every process a test started and left (a step that failed
    before its own clean-up) is stopped: SIGTERM, then SIGKILL. Set up first, so it runs last,
    after the broker's and the database's own fixtures have stopped them."""
    yield
    left = [p for p in psutil.Process().children(recursive=True) if not _resource_tracker(p)]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(left, timeout=LEFT_STOP_S)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _resource_tracker(process: psutil.Process) -> bool:
    """multiprocessing's resource tracker, which the interpreter itself stops at exit: killed
    here, it is relaunched at exit and prints a traceback per semaphore it no longer knows."""
    with contextlib.suppress(psutil.Error):
        return any("resource_tracker" in part for part in process.cmdline())
    return False


@pytest.fixture(scope="session")
def tier_s() -> str:
    """The smallest real model (SmolLM2-135M), installed on first use: its path."""
    from agents.install import install

    return str(install("S", progress=lambda line: None))


@pytest.fixture(scope="session", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[signing.Trust]:
    """Every test runs with signatures required: keys are made as principals appear, and the
    processes a test starts find them through $SALE_KEYRING and $SALE_KEY_DIR."""
    key_dir = tmp_path_factory.mktemp("keys")
    keyring = key_dir / "keyring.toml"
    ensure_keys({**SERVICE_ROLES, "client": "any"}, key_dir, keyring)
    security = SecurityConfig(keyring=keyring, key_dir=key_dir)
    trust = trust_of(security)
    from_files = trust.signer_for

    def signer_for(principal: str) -> signing.Signer | None:
        if private_path(key_dir, principal).exists():
            return from_files(principal)
        role = SERVICE_ROLES.get(principal, "any")
        new_key(principal, role, key_dir, keyring)
        signer = from_files(principal)
        trust.keyring.add(signing.PublicKey(signer.key_id, principal, role, signer.public))
        return signer

    trust.signer_for = signer_for
    before = signing.current()
    signing.install(trust)
    saved = {k: os.environ.get(k) for k in ("SALE_KEYRING", "SALE_KEY_DIR")}
    os.environ.update(SALE_KEYRING=str(keyring), SALE_KEY_DIR=str(key_dir))
    yield trust
    signing.install(before)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with LocalBroker(log_path=log_path) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def database_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = Path(tmp_path_factory.mktemp("pg"))
    with resolve_server(os.environ.get("DATABASE_URL", ""), data_dir, probe_local=True) as url:
        yield url


@pytest.fixture(scope="session")
async def database_url(database_server: str) -> AsyncIterator[str]:
    """A database of this run's own."""
    url = await create_database(database_server, prefix="sale_test")
    yield url
    await drop_database(database_server, url)


@pytest.fixture
async def fresh_database(database_server: str) -> AsyncIterator[str]:
    """A whole database of this test's own, for code that connects by URL (several processes
    or pools), where a schema on one connection would not reach."""
    url = await create_database(database_server, prefix="sale_t")
    yield url
    await drop_database(database_server, url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose search_path is a schema of this test's own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(database_url)
    await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
    yield conn
    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await conn.close()


@pytest.fixture
def broker_config(kafka_bootstrap: str) -> BrokerConfig:
    """Settings for this test: a unique topic prefix and quick group joins."""
    return BrokerConfig(
        bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        partitions=3,
        inbox_partitions=4,  # agents share partitions: their records skipped by header
        fetch_max_wait_ms=10,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )


@pytest.fixture
async def topics(broker_config: BrokerConfig) -> Topics:
    await ensure_topics(broker_config)
    return Topics(broker_config.topic_prefix)
