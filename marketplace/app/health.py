"""`python -m marketplace.app.health CHECK...`: the health checks of docker-compose.yml's services.

A container is healthy when what its service cannot work without answers from inside it, with
the container's own config, credentials and privileges:

- `broker`: the broker answers and has the marketplace's topics. Every service creates them at
  start, so missing topics mean the service has not started yet, or the broker lost its log.
- `database`: Postgres at `[database].url` answers a query.
- `sandbox`: one run of the sandbox succeeds, its isolation probe included. It fails when the
  container lacks what the sandbox needs (docker-compose.yml says what that is), and then the
  verifier and the agents cannot run code at all.
- `--http URL`: the URL answers with a 2xx status (the model server, the front door).

Each check prints one line; the exit status is 0 only if every check passed, else 1 (the
status Docker reads as unhealthy). Each check is bounded by a few seconds, so the whole command
finishes within the healthcheck's timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

from marketplace.shared.config import Config, ConfigError, config_path, load_config, unset

TIMEOUT_S = 5.0
CHECKS = ("broker", "database", "sandbox")


class Unhealthy(RuntimeError):
    """A check failed; the message says what did not answer and why."""


def broker(config: Config) -> str:
    from marketplace.shared.admin import BrokerUnreachable, missing_topics

    if not config.broker.bootstrap:
        raise Unhealthy(unset("broker", "bootstrap"))
    try:
        missing = asyncio.run(missing_topics(config.broker, timeout_s=TIMEOUT_S))
    except BrokerUnreachable as exc:
        raise Unhealthy(str(exc)) from None
    if missing:
        where = config.broker.bootstrap
        raise Unhealthy(f"{where} lacks {len(missing)} of the topics, {missing[0]} among them")
    return f"{config.broker.bootstrap} answers, with every topic"


def database(config: Config) -> str:
    import asyncpg

    if not config.database.url:
        raise Unhealthy(unset("database", "url"))

    async def query() -> None:
        conn = await asyncpg.connect(config.database.url, timeout=TIMEOUT_S)
        try:
            await conn.fetchval("SELECT 1", timeout=TIMEOUT_S)
        finally:
            await conn.close()

    try:
        asyncio.run(query())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise Unhealthy(f"Postgres does not answer: {exc!r}") from None
    return "Postgres answers"


def sandbox(config: Config) -> str:
    from marketplace.shared.sandbox import Limits, SandboxUnavailable, run_python

    try:
        result = run_python("pass", Limits(cpu_s=5, wall_s=TIMEOUT_S))
    except SandboxUnavailable as exc:
        raise Unhealthy(str(exc)) from None
    if not result.ok:
        raise Unhealthy(result.summary().splitlines()[0])
    return "runs code isolated"


def http(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"{url} answers {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"{url} does not answer: {exc}") from None
    if not 200 <= status < 300:
        raise Unhealthy(f"{url} answers {status}")
    return f"{url} answers {status}"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m marketplace.app.health", description=__doc__)
    root.add_argument(
        "--config",
        help="config file (default: $SALE_CONFIG, else the nearest sale.toml here or above)",
    )
    root.add_argument("checks", nargs="*", metavar="CHECK", help=", ".join(CHECKS))
    root.add_argument("--http", action="append", default=[], metavar="URL", help="GET URL: 2xx")
    return root


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[[], str]]]:
    """The checks to run, in order, as (name, thunk). The config is read only if a check needs
    it, and then once (the model server's container has none)."""
    config: Config | None = None

    def configured() -> Config:
        nonlocal config
        if config is None:
            config = load_config(config_path(args.config))
        return config

    named = {"broker": broker, "database": database, "sandbox": sandbox}
    steps = [(c, lambda c=c: named[c](configured())) for c in args.checks]
    return steps + [("http", lambda u=u: http(u)) for u in args.http]


def main(argv: list[str] | None = None) -> int:
    command = parser()
    args = command.parse_args(argv)
    if unknown := [c for c in args.checks if c not in CHECKS]:
        command.error(f"unknown check {unknown[0]!r} (choose from {', '.join(CHECKS)})")
    if not args.checks and not args.http:
        command.error("name at least one check")
    steps = plan(args)
    healthy = True
    for name, check in steps:
        try:
            print(f"{name}: ok: {check()}")
        except (Unhealthy, ConfigError) as exc:
            print(f"{name}: FAILED: {exc}")
            healthy = False
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
