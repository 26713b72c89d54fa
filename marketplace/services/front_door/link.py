"""The front door's link to the marketplace: the client (`marketplace.client.Client`), connected
when first needed and again after the broker went away, so that `sale serve` outlives a broker
that stops (a `sale up` stopped and started again) and answers meanwhile at once.

Before each request the broker's address is probed (a TCP connect, `PROBE_S` at most): where
nothing answers, the request is a 503 `unavailable` naming the address within seconds, instead
of a publish waiting out the Kafka client's request timeout (40 s) and failing as a 500. The
client of a broker that went away is closed in the background (its consumer would otherwise
retry and log for as long as the broker stays away); the first request after the broker is back
connects a new one. While connected, the address is also probed every `WATCH_S` between
requests, so a broker restarted (Tansu comes back empty) between two requests is not served by
a client of the broker before. One warning line says the broker is away, one that it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.errors import KafkaError

from marketplace.client import Client, Outcome, SubmitError
from marketplace.shared.config import Config

log = logging.getLogger("front_door")
PROBE_S = 2.0  # a broker's port that does not accept a connection in this long is away
CONNECT_S = 3.0  # the client's start (its producer, its watch of the answers) at most
CLOSE_S = 5.0  # a lost client's stop, in the background
WATCH_S = 1.0  # while connected, the address is probed this often, requests or not


class Unavailable(SubmitError):
    """The broker does not answer: nothing was posted."""


class Link:
    """Asks the marketplace as `Client.ask` does; `Unavailable` while its broker is away."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.bootstrap = config.broker.bootstrap
        self._client: Client | None = None
        self._connecting = asyncio.Lock()
        self._away = False  # said so in the log: said once per absence
        self._closing: set[asyncio.Task] = set()
        self._watch: asyncio.Task | None = None

    async def ask(self, prompt: str, **options: object) -> Outcome:
        client = await self.connected()
        try:
            return await client.ask(prompt, **options)
        except (KafkaError, OSError) as exc:  # it went away during the request
            raise self._lost(exc) from None

    async def connected(self) -> Client:
        """The client, connecting one if there is none; `Unavailable` if the broker is away."""
        if not await reachable(self.bootstrap, PROBE_S):
            raise self._lost("nothing accepts a connection")
        async with self._connecting:
            if self._client is not None:
                return self._client
            client = Client(self.config)
            try:
                async with asyncio.timeout(CONNECT_S):
                    await client.__aenter__()
            except (KafkaError, OSError, TimeoutError) as exc:
                raise self._lost(exc) from None
            self._client = client
            self._watch = asyncio.create_task(self._watching(client))
        if self._away:
            log.info("the broker at %s answers again: serving", self.bootstrap)
            self._away = False
        return client

    async def _watching(self, client: Client) -> None:
        """Drops `client` once its broker's address stops answering."""
        while self._client is client:
            await asyncio.sleep(WATCH_S)
            if self._client is client and not await reachable(self.bootstrap, PROBE_S):
                self._lost("nothing accepts a connection")

    def _lost(self, why: object) -> Unavailable:
        """The error to answer with; the client of the broker that went away is closed."""
        reason = why if isinstance(why, str) else f"{type(why).__name__}: {why}".rstrip(": ")
        if not self._away:
            log.warning(
                "the broker at %s does not answer (%s): answering 503 until it does",
                self.bootstrap,
                reason,
            )
            self._away = True
        if self._client is not None:
            closing = asyncio.create_task(_close(self._client))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            self._client = None
        return Unavailable(f"no broker answers at {self.bootstrap} ({reason})")

    async def close(self) -> None:
        """Closes the client and waits for any closing in the background."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._client is not None:
            await _close(self._client)
            self._client = None
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> Link:
        """Connects at once if it can; a broker away at start is waited for, not fatal."""
        with contextlib.suppress(Unavailable):
            await self.connected()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def reachable(bootstrap: str, timeout_s: float) -> bool:
    """Whether any of the bootstrap addresses accepts a TCP connection within `timeout_s`."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            async with asyncio.timeout(timeout_s):
                _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


async def _close(client: Client) -> None:
    """Stops a client whose broker may be gone: bounded, and quietly (it is being dropped)."""
    # aiokafka's consumer, stopped while fetching from a broker that is gone, may end in a
    # CancelledError of its own fetch: the client is dropped either way
    with contextlib.suppress(Exception, asyncio.CancelledError):
        async with asyncio.timeout(CLOSE_S):
            await client.__aexit__(None, None, None)
