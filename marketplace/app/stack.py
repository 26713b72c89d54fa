"""`sale up`: the whole marketplace on one machine, in the foreground, from one config file.

Starts a broker (unless one is configured), Postgres (unless a URL is configured), creates the
topics, and runs each configured service as a child process whose output is prefixed with its
name. SIGINT or SIGTERM stops the children (newest first), then Postgres, then the broker:
exactly what `up` started, nothing else. A child that dies is restarted after a pause, so one
crashing service does not take the marketplace down; its log says why.

A lost broker stops the whole stack with one message and exit code 1 (`marketplace.shared.admin`
says why it stops rather than going on): the broker `up` started stops answering (Tansu keeps
its log in memory, so it cannot come back with it), a configured broker answers without the
topics, or a service exits because it saw that itself. A configured broker that does not answer
is waited for, said once: it may come back with its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from marketplace.shared import endpoints, signing, stack_lock
from marketplace.shared.admin import (
    BROKER_LOST_EXIT,
    BrokerUnreachable,
    ensure_topics,
    lost_message,
    missing_topics,
)
from marketplace.shared.children import die_with_parent, kill_group
from marketplace.shared.config import BrokerConfig, Config, SecurityConfig
from marketplace.shared.database import log_database
from marketplace.shared.keyfiles import ensure_keys, trust_of
from marketplace.shared.local_broker import LocalBroker

RESTART_DELAY_S = 2.0
BROKER_CHECK_S = 1.0  # often: a service restarted meanwhile would create the topics again
OWN_BROKER_STRIKES = 2  # checks in a row our own broker may miss (a busy moment) before it is gone
STOP_GRACE_S = 5.0  # a service stops within this of SIGTERM (`services.process`); then killed


@dataclass
class Child:
    """One supervised service process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path | None = None  # where its output goes; None: prefixed lines on our stdout
    process: asyncio.subprocess.Process | None = None
    stopping: bool = False
    restarts: int = field(default=0)


STARTED: list[Child] = []  # the children of the stack running in this process (a second signal)


def service_argv(name: str, config_path: Path) -> list[str]:
    return [sys.executable, "-m", "marketplace.app.cli", name, "--config", str(config_path)]


def children_for(config: Config, config_path: Path, env: dict[str, str]) -> list[Child]:
    """The configured services, then one process per configured agent."""
    services = [Child(name, service_argv(name, config_path), env) for name in config.stack.services]
    agents = [
        Child(f"agent.{a.id}", [*service_argv("agent", config_path), "--id", a.id], env)
        for a in config.agents
    ]
    return services + agents


@contextlib.contextmanager
def infrastructure(config: Config, run_dir: Path) -> Iterator[tuple[str, str]]:
    """Yields (bootstrap, database URL), starting a local broker or Postgres where none is set."""
    with contextlib.ExitStack() as started:
        bootstrap = config.broker.bootstrap
        if not bootstrap:
            broker = started.enter_context(LocalBroker(log_path=run_dir / "tansu.log"))
            bootstrap = broker.bootstrap
            say(f"broker: Tansu on {bootstrap} (pid {broker.pid}, log {run_dir / 'tansu.log'})")
        database = config.database
        database_url = started.enter_context(log_database(database))
        if not database.url:
            say(f"database: embedded Postgres in {database.data_dir}")
        yield bootstrap, database_url


def stack_keys(config: Config, run_dir: Path) -> dict[str, str]:
    """Makes the keys the stack's processes need on first start (into `run_dir/keys` unless
    `[security]` names the place), installs this process's trust, and returns the environment
    that tells each child where the keys are. Signatures not required and no keyring: none."""
    security = config.security
    if security.keyring is None and not security.require_signatures:
        return {}
    keys = run_dir.absolute() / "keys"
    security = SecurityConfig(
        require_signatures=security.require_signatures,
        keyring=(security.keyring or keys / "keyring.toml").absolute(),
        key_dir=(security.key_dir or keys).absolute(),
    )
    principals = {name: name for name in config.stack.services} | {"client": "client"}
    principals |= {agent.id: "agent" for agent in config.agents}
    if made := ensure_keys(principals, security.key_dir, security.keyring):
        say(f"keys: made for {', '.join(made)} in {security.key_dir}")
    signing.install(trust_of(security))
    return {"SALE_KEYRING": str(security.keyring), "SALE_KEY_DIR": str(security.key_dir)}


@contextlib.asynccontextmanager
async def running(
    config: Config,
    config_path: Path,
    run_dir: Path,
    stop: asyncio.Event,
    quiet: bool = False,
    lost: asyncio.Event | None = None,
) -> AsyncIterator[tuple[str, str]]:
    """The whole stack while the block runs; yields (bootstrap, database URL). Leaving the block
    stops the children (newest first), then Postgres and the broker if they were started here.
    `quiet`: each child's output goes to `run_dir/<name>.log` instead of our stdout. A lost
    broker sets `stop` (and `lost`), after saying so."""
    lost = lost or asyncio.Event()
    with contextlib.ExitStack() as held:
        lock = held.enter_context(one_stack(run_dir, config_path))  # before anything starts
        keys_env = stack_keys(config, run_dir)
        bootstrap, database_url = held.enter_context(infrastructure(config, run_dir))
        broker = config.broker.model_copy(update={"bootstrap": bootstrap})
        created = await ensure_topics(broker)
        say(f"topics: {len(created)} created with {broker.partitions} partitions each")
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": bootstrap,
            "DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",
            **keys_env,
        }
        children = children_for(config, config_path.absolute(), env)
        STARTED[:] = children
        if quiet:
            for child in children:
                child.log = run_dir / f"{child.name}.log"
        supervisors = [asyncio.create_task(supervise(child, stop, lost)) for child in children]
        supervisors.append(asyncio.create_task(guard_broker(broker, config, stop, lost)))
        try:
            with endpoints.published(run_dir, env):
                lock.publish({name: env[name] for name in endpoints.NAMES if env.get(name)})
                say(
                    f"ready: broker {bootstrap}, database {database_url}, "
                    f"services: {', '.join(c.name for c in children) or 'none'} (Ctrl-C stops)"
                )
                yield bootstrap, database_url
        finally:
            stop.set()
            say("stopping")
            # all at once, each within its bound: the stack is down STOP_GRACE_S after the
            # signal at most, whatever its size (one at a time it was ten seconds per service)
            await asyncio.gather(*(terminate(child) for child in reversed(children)))
            await asyncio.gather(*supervisors)
    say("stopped")


@contextlib.contextmanager
def one_stack(run_dir: Path, config_path: Path) -> Iterator[stack_lock.StackLock]:
    """The run directory's lock (`shared.stack_lock`), taken before anything starts: a stack
    already running there refuses this one (`StackRunning`, one line naming it), untouched."""
    with stack_lock.held(run_dir, config_path) as (lock, gone):
        if gone is not None:
            say(f"taking over the lock of a stack that is gone ({gone.describe()})")
        yield lock


def stop_on_signals(stop: asyncio.Event, children: list[Child] | None = None) -> None:
    """The first SIGINT or SIGTERM sets `stop`; the second kills `children` (each one's process
    group: the stop goes on at once to Postgres and the broker); the third ends `up` now."""
    loop = asyncio.get_running_loop()
    heard = 0

    def handle() -> None:
        nonlocal heard
        heard += 1
        if heard == 1:
            stop.set()
        elif heard == 2:
            say("asked again: killing the services")
            for child in children or ():
                child.stopping = True
                if child.process is not None and child.process.returncode is None:
                    kill_group(child.process.pid)
        else:
            os._exit(1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle)


async def up(config: Config, config_path: Path, run_dir: Path = Path(".sale")) -> int:
    stop = asyncio.Event()
    stop_on_signals(stop, STARTED)
    lost = asyncio.Event()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the guard says what matters, once
    async with running(config, config_path, run_dir, stop, lost=lost):
        await stop.wait()
    return 1 if lost.is_set() else 0


async def guard_broker(
    broker: BrokerConfig, config: Config, stop: asyncio.Event, lost: asyncio.Event
) -> None:
    """Checks the broker every `BROKER_CHECK_S` until `stop`; on losing it, says why once and
    stops the stack."""
    own = not config.broker.bootstrap
    unanswered = 0  # checks in a row
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BROKER_CHECK_S)
        if stop.is_set():
            return
        try:
            missing = await missing_topics(broker)
        except BrokerUnreachable as exc:
            unanswered += 1
            if own and unanswered >= OWN_BROKER_STRIKES:
                return _lose(
                    f"the broker this stack started ({broker.bootstrap}) is gone: its log was "
                    "in memory, so every open auction, undelivered award and committed offset "
                    "went with it. Start again with `sale up`.",
                    stop,
                    lost,
                )
            if not own and unanswered == 1:
                say(f"{exc}; waiting for it (it may come back with its log)")
            continue
        if unanswered and not own:
            say(f"broker {broker.bootstrap} answers again")
        unanswered = 0
        if missing:
            return _lose(lost_message(broker, missing), stop, lost)


def _lose(reason: str, stop: asyncio.Event, lost: asyncio.Event) -> None:
    if not lost.is_set():
        say(f"broker lost: {reason}")
    lost.set()
    stop.set()


async def supervise(child: Child, stop: asyncio.Event, lost: asyncio.Event) -> None:
    """Keeps `child` running until `stop` is set, restarting it when it dies; a child that
    stopped because the broker lost its log stops the stack (restarted, it would carry on)."""
    while not stop.is_set():
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # the terminal's Ctrl-C reaches `up` only; `up` stops us
            preexec_fn=die_with_parent(),  # SIGTERM from the kernel should `up` be killed
        )
        say(f"{child.name}: started (pid {child.process.pid})")
        if child.stopping:  # stop arrived while it was starting
            child.process.terminate()
        assert child.process.stdout is not None
        with child.log.open("a") if child.log else contextlib.nullcontext() as log:
            async for line in child.process.stdout:
                text = f"[{child.name}] {line.decode(errors='replace').rstrip()}"
                print(text, file=log, flush=True)
        code = await child.process.wait()
        if child.stopping or stop.is_set():
            return
        if code == BROKER_LOST_EXIT:
            return _lose(f"{child.name} stopped: the broker lost its topics", stop, lost)
        child.restarts += 1
        say(f"{child.name}: exited with {code}; restart {child.restarts} in {RESTART_DELAY_S}s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RESTART_DELAY_S)


async def terminate(child: Child) -> None:
    child.stopping = True
    process = child.process
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        say(f"{child.name}: did not stop within {STOP_GRACE_S}s, killing it")
        kill_group(process.pid)
        await process.wait()


def say(message: str) -> None:
    print(f"sale up: {message}", flush=True)
