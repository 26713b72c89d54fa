"""`sale serve`: the front door (`marketplace.services.front_door`) under uvicorn, asking the
marketplace through its link (`front_door.link`): connected at start if the broker answers,
else when it does; while it does not, every request is a 503 `unavailable` naming its address
at once, and one warning line says so.

It stops as every service does (`services.process.until_signalled`): within 5 s of SIGTERM or
SIGINT. Requests still open get `GRACE_S` to be answered; one waiting longer for its task's
outcome is cut (its task goes on in the marketplace, its answer stays readable with `sale
result`)."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from marketplace.services.front_door.app import create_app
from marketplace.services.front_door.link import Link
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
    link = Link(config)
    app = create_app(link, config)  # an unset key variable fails here
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
        async with link:
            serving = asyncio.create_task(server.serve())
            asked = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, asked}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            asked.cancel()
            await serving

    await until_signalled(run, "serve")
    return 0 if server.started else 1
