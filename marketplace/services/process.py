"""Running a service process: start its bus, serve until SIGTERM or SIGINT, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from marketplace.shared.admin import BROKER_LOST_EXIT, BrokerLost
from marketplace.shared.bus import Bus


def configure_logging(name: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("sale.kafka").setLevel(logging.WARNING)  # FastStream's chatter


async def until_signalled(run: Callable[[asyncio.Event], Awaitable[None]], name: str) -> None:
    """Calls `run(stop)`; SIGTERM or SIGINT sets `stop`, and `run` should then return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(name).info("serving")
    try:
        await run(stop)
    except BrokerLost:  # the service said why, once; a supervisor must not restart it blindly
        raise SystemExit(BROKER_LOST_EXIT) from None
    logging.getLogger(name).info("stopped")


async def serve(bus: Bus) -> None:
    """Runs `bus` (its subscribers already attached) until the process is asked to stop."""

    async def run(stop: asyncio.Event) -> None:
        async with bus:
            await stop.wait()

    await until_signalled(run, bus.producer)
