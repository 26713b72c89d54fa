"""Running a service process: start its bus, serve until SIGTERM or SIGINT, stop within 5 s.

Every `sale <service>` runs through `until_signalled`, which also watches the service's broker
(`watch_broker`): a broker that comes back empty stops the service with one message and exit
code `BROKER_LOST_EXIT`, run alone or under `sale up` (which does not restart it then).

A stop is bounded (`marketplace.shared.stopping`, docs/failure.md "Stops"). The first SIGTERM or
SIGINT starts the clock: the service's loop sees `stop` and commits what it has done, each step
of its way out within its share of `STOP_S`; a service still busy `CANCEL_S` before the
deadline (stuck waiting on a broker that is gone, say) is cancelled, and whatever is not done
by the deadline is abandoned. Nothing is lost by that: offsets are committed only after what
their records caused, so what was abandoned is read again. Should the process still be alive
`FORCE_S` after the signal (a thread that will not end, an executor that will not shut down),
a watchdog thread ends it. A second SIGTERM or SIGINT ends it at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator

from marketplace.shared import stopping
from marketplace.shared.admin import BROKER_CHECK_S, BROKER_LOST_EXIT, BrokerLost, watch_broker
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig

STOP_S = stopping.STOP_S  # from the first signal to the end of the service's `run`
CANCEL_S = 1.0  # before that deadline: a `run` still busy is cancelled, its way out bounded
FORCE_S = 4.7  # from the first signal: the process ends, whatever it is doing
SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    *,
    own_process: bool = True,
) -> None:
    """Calls `run(stop)`; SIGTERM or SIGINT sets `stop`, and `run` has `STOP_S` to return.

    With `broker`, checks it every `broker_check_s` beside `run`: when it answers without the
    marketplace's topics, logs `broker lost: ...` once, sets `stop`, gives `run` the same
    bounded while to return and exits with `BROKER_LOST_EXIT`. A `run` that raises `BrokerLost`
    itself (the auctioneer watches on its own, and is given no `broker`) exits the same way.

    `own_process`: the process is the service's alone, so a stop that overruns `FORCE_S` ends
    it (`os._exit`), and so does a second signal; False leaves the process alone (in-process
    use), the stop still bounded."""
    log = logging.getLogger(name)
    stop = asyncio.Event()
    ending = _Ending(log, own_process)
    with _signals(stop, ending):
        log.info("serving")
        service = asyncio.ensure_future(run(stop))
        watch = None  # the topics may not exist yet: the service's bus creates them
        if broker is not None:
            watch = asyncio.create_task(watch_broker(broker, broker_check_s, seen=False))
        asked = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                {service, asked} | ({watch} if watch else set()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            lost = watch is not None and watch.done() and not service.done()
            if lost and not isinstance(watch.exception(), BrokerLost):
                await _stop(service, stop, log, quiet=True)
                watch.result()  # an unexpected failure of the watch: raised as is
            if lost:
                log.critical("broker lost: %s", watch.exception())
                ending.code = BROKER_LOST_EXIT
                ending.begin()
            await _stop(service, stop, log, quiet=lost)
            if lost:
                raise SystemExit(BROKER_LOST_EXIT)
        except BrokerLost:  # the service said why, once; a supervisor must not restart it blindly
            raise SystemExit(BROKER_LOST_EXIT) from None
        finally:
            for task in (watch, asked):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, BrokerLost):
                        await task
            stopping.reset()
    log.info("stopped")


async def _stop(
    service: asyncio.Future, stop: asyncio.Event, log: logging.Logger, quiet: bool = False
) -> None:
    """Asks `service` to stop and waits for it within the stop's deadline: cancelled when it is
    still busy `CANCEL_S` before, abandoned at the deadline. `quiet`: on a lost broker its
    errors say nothing new. A service that failed on its own (not stopping) raises here."""
    if not service.done():
        stop.set()
        stopping.begin()
        await asyncio.wait({service}, timeout=max(0.0, stopping.remaining() - CANCEL_S))
    if not service.done():
        log.warning("still busy %.1f s into the stop: cancelling it", STOP_S - CANCEL_S)
        service.cancel()
        await asyncio.wait({service}, timeout=stopping.remaining())
    if not service.done():
        log.error("did not end within %.1f s of the stop: abandoned", STOP_S)
        return
    if service.cancelled() or (exc := service.exception()) is None:
        return
    if quiet:
        log.debug("while stopping on a lost broker: %r", exc)
        return
    raise exc  # a `BrokerLost` of the service's own becomes its exit code


class _Ending:
    """The process's last resort: once a stop has begun, a watchdog thread that ends the
    process `FORCE_S` later, whatever it is doing (nothing is committed that is not done, so
    ending is safe); a second signal ends it at once."""

    def __init__(self, log: logging.Logger, own_process: bool) -> None:
        self.log = log
        self.own_process = own_process
        self.code = 0
        self.signals = 0
        self._began = False

    def begin(self) -> None:
        stopping.begin()
        if self._began or not self.own_process:
            return
        self._began = True
        watchdog = threading.Timer(FORCE_S, self._force)
        watchdog.daemon = True
        watchdog.name = "sale-stop-watchdog"
        watchdog.start()

    def again(self, signum: int) -> None:
        if not self.own_process:
            return
        self.log.warning("second %s: exiting now", signal.Signals(signum).name)
        _exit(128 + signum)

    def _force(self) -> None:
        self.log.warning("still running %.1f s after the stop began: exiting now", FORCE_S)
        _exit(self.code)


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def _signals(stop: asyncio.Event, ending: _Ending) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (the first) or end the process (the next), for the block.

    Python-level handlers, not the event loop's: they run between two bytecodes of the main
    thread, so a stop is heard even while the loop is busy, and they hand `stop.set` to the
    loop thread-safely. The previous handlers are back after the block."""
    loop = asyncio.get_running_loop()

    def handle(signum: int, frame: object) -> None:
        ending.signals += 1
        if ending.signals > 1:
            ending.again(signum)
        ending.begin()
        loop.call_soon_threadsafe(stop.set)

    previous = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def serve(bus: Bus) -> None:
    """Runs `bus` (its subscribers already attached) until the process is asked to stop."""

    async def run(stop: asyncio.Event) -> None:
        async with bus:
            await stop.wait()

    await until_signalled(run, bus.producer, bus.config)
