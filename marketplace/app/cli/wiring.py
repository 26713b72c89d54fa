"""The services, built from the config: the one place `sale.toml` becomes an auctioneer, a
recorder, a verifier, a monitor or an agent with what each needs (its bus, its keys, the
auction memory, the tenants' ledger, the local models' vocabularies), and the one place a
command finds the database of the event log. The commands run what is built here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from marketplace.app.cli.arguments import UsageError
from marketplace.shared.config import AgentConfig, Config, ConfigError, unset

if TYPE_CHECKING:
    from agents.runtime import AgentService
    from marketplace.log.ledger import Ledger
    from marketplace.log.memory import Memory
    from marketplace.services.auctioneer import Auctioneer
    from marketplace.services.recorder import Recorder
    from marketplace.services.verifier import Verifier
    from marketplace.shared.bus import Bus
    from marketplace.shared.tokens import Tokenizers


def secure(config: Config) -> None:
    """This process signs and checks with the keys `[security]` names; bad ones fail here."""
    from marketplace.shared import signing
    from marketplace.shared.keyfiles import trust_of

    signing.install(trust_of(config.security))


def bus(config: Config, producer: str) -> Bus:
    """The broker connection of `producer` (a service, an agent's id, or "client")."""
    from marketplace.shared.bus import Bus

    return Bus(config.broker, producer=producer)


def need_broker(config: Config) -> None:
    """A command that joins a running broker: none configured fails before anything starts."""
    if not config.broker.bootstrap:
        raise ConfigError(f"{unset('broker', 'bootstrap')}; which broker?")


def need_database(config: Config) -> str:
    """The database URL of a command that cannot run without one."""
    if not config.database.url:
        raise ConfigError(f"{unset('database', 'url')}; which database?")
    return config.database.url


def monitor(config: Config) -> Bus:
    """A bus with the monitor's one-line-per-event handlers attached."""
    from marketplace.services import monitor

    attached = bus(config, "monitor")
    monitor.attach(attached, config)
    return attached


def auctioneer(config: Config) -> Auctioneer:
    from marketplace.services.auctioneer import Auctioneer

    return Auctioneer(
        config,
        bus(config, "auctioneer"),
        memory(config),
        tokenizers=tokenizers(config),
        ledger=ledger(config),
    )


def recorder(config: Config) -> Recorder:
    from marketplace.services.recorder import Recorder

    return Recorder(config, bus(config, "recorder"), need_database(config))


def verifier(config: Config) -> Verifier:
    from marketplace.services.verifier import Verifier

    return Verifier(config, bus(config, "verifier"))


def agent(config: Config, settings: AgentConfig) -> AgentService:
    """The agent of `settings` with its model loaded before it joins (a bad model fails at
    start), and the search indexes too when it takes search tasks (so does a corpus it cannot
    read); its completions cached in Postgres when `cache` says so."""
    from agents.agent import LLMAgent
    from agents.backends import build
    from agents.runtime import AgentService
    from agents.searching import Corpora, ToolUnavailable

    llm = build(settings)
    tools = Corpora(config.corpora)
    if "search" in settings.kinds:
        for corpus_id in config.corpora:
            try:
                tools.load(corpus_id)
            except ToolUnavailable as exc:
                raise UsageError(f"agent {settings.id} takes search tasks, but {exc}") from None
    if settings.cache:
        from agents.cache import CachedLLM

        url = settings.cache_url or config.database.url
        if not url:
            raise ConfigError(f"agents.{settings.id}.cache needs database.url (or DATABASE_URL)")
        llm = CachedLLM(llm, url)
    return AgentService(
        LLMAgent(settings, llm, mechanism=config.auction.mechanism, tools=tools),
        bus(config, settings.id),
        heartbeat_s=settings.heartbeat_s,
        state=settings.state_dir / f"{settings.id}.handled" if settings.state_dir else None,
    )


def tokenizers(config: Config) -> Tokenizers:
    """The vocabularies of the configured local models: bids of theirs get their plans recounted."""
    from agents.install import model_path
    from marketplace.shared.tokens import Tokenizers

    local = [a for a in config.agents if a.backend == "llama_cpp"]
    return Tokenizers({a.model: a.path or model_path(a.tier) for a in local if a.path or a.tier})


def ledger(config: Config) -> Ledger:
    """Where tenants' spend is read (the Postgres log); tenant budgets need one."""
    from marketplace.log.ledger import NoLedger, PostgresLedger

    if config.database.url:
        return PostgresLedger(config.database.url)
    if budgeted := sorted(name for name, t in config.tenants.items() if t.budget is not None):
        raise ConfigError(
            f"tenants.{budgeted[0]}.budget: a tenant budget needs a database (spend is summed "
            f"from the log), and {unset('database', 'url')}"
        )
    return NoLedger()


def memory(config: Config) -> Memory:
    """The auction memory in Postgres when there is a database and the embeddings model."""
    from marketplace.log.memory import NoMemory, PostgresMemory
    from marketplace.shared import embeddings

    log = logging.getLogger("marketplace.services.auctioneer")
    if not config.database.url:
        log.warning("no database configured: refinement runs without memory examples")
        return NoMemory()
    if not embeddings.available():
        log.warning(
            "embeddings unavailable (install the `memory` extra): "
            "refinement runs without memory examples"
        )
        return NoMemory()
    return PostgresMemory(config.database.url)


@contextlib.contextmanager
def event_log(config: Config) -> Iterator[Config]:
    """`config` pointing at the database of the event log (`log_database`: the one `sale run`
    records into, embedded or not), once it answers: every command that reads the log or the
    benchmark's matrix goes through here."""
    from marketplace.shared.database import check_reachable, log_database

    with log_database(config.database) as url:
        asyncio.run(check_reachable(url))
        database = config.database.model_copy(update={"url": url})
        yield config.model_copy(update={"database": database})
