"""`sale serve`: the front door (`marketplace.services.front_door`) under uvicorn, asking the
marketplace through the client (`marketplace.client`), which it enters before serving so that a
broker that does not answer is one line and exit 1, not a failing first request."""

from __future__ import annotations

import contextlib
import sys

import uvicorn
from aiokafka.errors import KafkaError

from marketplace.client import Client
from marketplace.services.front_door.app import create_app
from marketplace.shared.config import Config


async def serve(config: Config, host: str, port: int) -> int:
    """Serves until SIGINT or SIGTERM (uvicorn's own handling); 1 if it could not start."""
    client = Client(config)
    app = create_app(client, config)  # an unset key variable fails here
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(client)
        except (KafkaError, OSError) as exc:
            print(
                f"sale serve: no broker answers at {config.broker.bootstrap}: {exc}",
                file=sys.stderr,
            )
            return 1
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)
        )
        await server.serve()
    return 0 if server.started else 1
