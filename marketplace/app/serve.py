"""`sale serve`: the front door (`marketplace.services.front_door`) under uvicorn, asking the
marketplace through the client (`marketplace.client`), which it enters before serving so that a
broker that does not answer is one line and exit 1, not a failing first request.

It stops as every service does (`services.process.until_signalled`): within 5 s of SIGTERM or
SIGINT. Requests still open get `GRACE_S` to be answered; one waiting longer for its task's
outcome is cut (its task goes on in the marketplace, its answer stays readable with `sale
result`)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import uvicorn
from aiokafka.errors import KafkaError

from marketplace.client import Client
from marketplace.services.front_door.app import create_app
from marketplace.services.process import until_signalled
from marketplace.shared.config import Config
from marketplace.shared.stopping import HANDLER_S

GRACE_S = HANDLER_S


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `until_signalled` has the signals (uvicorn's
    would raise SIGTERM again once served, and the process would end killed by it)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


async def serve(config: Config, host: str, port: int) -> int:
    """Serves until SIGINT or SIGTERM; 1 if it could not start."""
    client = Client(config)
    app = create_app(client, config)  # an unset key variable fails here
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=GRACE_S,
        )
    )

    async def run(stop: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(client)
            except (KafkaError, OSError) as exc:
                print(
                    f"sale serve: no broker answers at {config.broker.bootstrap}: {exc}",
                    file=sys.stderr,
                )
                return
            serving = asyncio.create_task(server.serve())
            asked = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, asked}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            asked.cancel()
            await serving

    await until_signalled(run, "serve")
    return 0 if server.started else 1
