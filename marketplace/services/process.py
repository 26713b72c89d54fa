"""Running a service process: start its bus, serve until SIGTERM or SIGINT, stop cleanly.

Every `sale <service>` runs through `until_signalled`, which also watches the service's broker
(`watch_broker`): a broker that comes back empty stops the service with one message and exit
code `BROKER_LOST_EXIT`, run alone or under `sale up` (which does not restart it then)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from marketplace.shared.admin import BROKER_CHECK_S, BROKER_LOST_EXIT, BrokerLost, watch_broker
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig

LOST_GRACE_S = 10.0  # how long a service may take to stop once its broker is lost


def configure_logging(name: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("sale.kafka").setLevel(logging.WARNING)  # FastStream's chatter


async def until_signalled(
    run: Callable[[asyncio.Event], Awaitable[None]],
    name: str,
    broker: BrokerConfig | None = None,
    broker_check_s: float = BROKER_CHECK_S,
) -> None:
    """Calls `run(stop)`; SIGTERM or SIGINT sets `stop`, and `run` should then return.

    With `broker`, checks it every `broker_check_s` beside `run`: when it answers without the
    marketplace's topics, logs `broker lost: ...` once, sets `stop`, gives `run` a while to
    return and exits with `BROKER_LOST_EXIT`. A `run` that raises `BrokerLost` itself (the
    auctioneer watches on its own, and is given no `broker`) exits the same way."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log = logging.getLogger(name)
    log.info("serving")
    service = asyncio.ensure_future(run(stop))
    watch = None  # the topics may not exist yet: the service's bus creates them
    if broker is not None:
        watch = asyncio.create_task(watch_broker(broker, broker_check_s, seen=False))
    try:
        if watch is not None:
            await asyncio.wait({service, watch}, return_when=asyncio.FIRST_COMPLETED)
        if watch is not None and watch.done() and not service.done():
            exc = watch.exception()
            if not isinstance(exc, BrokerLost):
                await _stop(service, stop, log)
                watch.result()  # an unexpected failure of the watch: raised as is
            log.critical("broker lost: %s", exc)
            await _stop(service, stop, log)
            raise SystemExit(BROKER_LOST_EXIT)
        await service
    except BrokerLost:  # the service said why, once; a supervisor must not restart it blindly
        raise SystemExit(BROKER_LOST_EXIT) from None
    finally:
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, BrokerLost):
                await watch
    log.info("stopped")


async def _stop(service: asyncio.Future, stop: asyncio.Event, log: logging.Logger) -> None:
    """Asks `service` to stop and waits a while; on a lost broker its errors say nothing new."""
    stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(service), LOST_GRACE_S)
    except TimeoutError:
        service.cancel()
        with contextlib.suppress(BaseException):
            await service
    except Exception as exc:  # the broker's loss is the one message
        log.debug("while stopping on a lost broker: %r", exc)


async def serve(bus: Bus) -> None:
    """Runs `bus` (its subscribers already attached) until the process is asked to stop."""

    async def run(stop: asyncio.Event) -> None:
        async with bus:
            await stop.wait()

    await until_signalled(run, bus.producer, bus.config)
