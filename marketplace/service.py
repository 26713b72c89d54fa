"""Running a service process: start its bus, serve until SIGTERM or SIGINT, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

from marketplace.bus import Bus


def configure_logging(name: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("sale.kafka").setLevel(logging.WARNING)  # FastStream's chatter


async def serve(bus: Bus) -> None:
    """Runs `bus` (its subscribers already attached) until the process is asked to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with bus:
        logging.getLogger(bus.producer).info("serving")
        await stop.wait()
    logging.getLogger(bus.producer).info("stopped")
