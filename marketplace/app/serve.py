"""`sale serve`: the front door (`marketplace.services.front_door`) under uvicorn, asking the
marketplace through the client.

The door is a service and knows the client only as an asker (`front_door.asking`); this is
where the real client is composed in, its errors turned into the door's, so that the door's
HTTP answers (402, 503, 504) follow from what the client says without the door importing it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import uvicorn
from aiokafka.errors import KafkaError

from marketplace.services.front_door.app import create_app
from marketplace.services.front_door.asking import (
    Answer,
    AskError,
    AskInvalid,
    AskRefused,
    AskTimeout,
)
from marketplace.shared.config import Config


class ClientAsker:
    """The marketplace client as the door's asker."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def ask(
        self,
        prompt: str,
        tenant: str = "default",
        budget: float | None = None,
        timeout_s: float = 300.0,
    ) -> Answer:
        from marketplace import InvalidTask, Refused, SubmitError, SubmitTimeout

        try:
            return await self.client.ask(prompt, tenant=tenant, budget=budget, timeout_s=timeout_s)
        except InvalidTask as exc:
            raise AskInvalid(str(exc)) from None
        except Refused as exc:
            raise AskRefused(str(exc)) from None
        except SubmitTimeout as exc:
            raise AskTimeout(str(exc)) from None
        except SubmitError as exc:
            raise AskError(str(exc)) from None


async def serve(config: Config, host: str, port: int) -> int:
    """Serves until SIGINT or SIGTERM (uvicorn's own handling); 1 if it could not start."""
    from marketplace import Client

    client = Client(config)
    app = create_app(ClientAsker(client), config)  # an unset key variable fails here
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
