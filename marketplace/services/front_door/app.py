"""The front door's ASGI app: the OpenAI-compatible routes, the operator's dashboard and
`/metrics`, in one FastAPI app that `sale serve` runs under uvicorn.

`create_app` takes the marketplace's client (`front_door.link.Link` in `sale serve`, or a
stand-in with its `ask` in tests) and the configuration; everything it reads besides is the
Postgres log and, for the consumer lag, the broker. Every error, from any route, is answered in
OpenAI's error shape, so a client has one shape to read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from marketplace.services.front_door import dashboard, openai, prometheus
from marketplace.services.front_door.openai import OpenAIError
from marketplace.services.front_door.reader import LogReader
from marketplace.shared.config import Config
from marketplace.shared.stopping import LEAVE_S, within

log = logging.getLogger("front_door")


def create_app(
    client: openai.Asks | None, config: Config, env: Mapping[str, str] = os.environ
) -> FastAPI:
    """The app; an unset key variable of `[serve].keys` fails here (`ConfigError`)."""
    door = openai.Door(
        client,
        mechanism=config.auction.mechanism,
        timeout_s=config.serve.timeout_s,
        keys=openai.load_keys(config.serve, env),
    )
    reader = LogReader(config.database.url)
    lag = prometheus.LagProbe(config.broker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await within(reader.close(), LEAVE_S, "front door: closing its pool of the log")

    app = FastAPI(title="SALE front door", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(openai.router(door))
    app.include_router(dashboard.router(reader))
    app.mount("/dashboard/static", StaticFiles(directory=dashboard.STATIC), name="static")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        families = [*await prometheus.from_log(reader), *await lag.metrics()]
        return Response(prometheus.exposition(families), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    _answer_errors(app)
    return app


def _answer_errors(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def known(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return bad_request(exc.errors()).response()

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return OpenAIError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        message = f"the front door failed: {type(exc).__name__}"
        return OpenAIError(500, message, "server_error").response()


def bad_request(errors: list[dict]) -> OpenAIError:
    """The first validation error as a 400 naming its field (`messages.0.content`)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ())]
    where = loc[1:] if loc and loc[0] in ("body", "query", "path") else loc
    param = ".".join(where) or None
    if first.get("type") == "json_invalid":
        return OpenAIError(400, f"the body is not valid JSON: {first.get('msg')}")
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return OpenAIError(400, message, param=param)
