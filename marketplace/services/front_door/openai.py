"""The OpenAI-compatible routes: any OpenAI client (the official `openai` package, an SDK, curl)
runs a prompt through the marketplace's auction by naming the model `sale`.

`POST /v1/chat/completions` turns the messages into one prompt, asks the marketplace (a task of
its own, auctioned, executed by the winner) and answers in the `chat.completion` shape, usage
included. What an OpenAI response has no field for travels in headers (`x-sale-task-id`,
`x-sale-winner`, `x-sale-cost`, `x-sale-status`, `x-sale-mechanism`) and in a `metadata` object
beside `choices`, so `sale audit TASK_ID` can tell the story of any answer.

Parameters: `max_tokens` (or `max_completion_tokens`) caps the answer (`TaskPosted.max_tokens`,
honoured by the agents; `finish_reason` "length" when it cut the answer) and `stop` cuts it;
what the market cannot do (`n` > 1, tools, log-probabilities, JSON mode, audio, ...: `REFUSED`)
is a 400 naming the parameter; sampling knobs are accepted and ignored, as the winner decodes
greedily with its own model (the table: docs/front-door.md).

Models: `sale`, and `sale/<mechanism>` naming the mechanism this marketplace runs (lean or
paper); another mechanism is a model that does not exist here (404), since the auctioneer
decides every auction by its one configured mechanism.

Tenants: with `[serve].keys` set, the bearer key names the tenant (a key is a tenant's secret,
so no caller can spend another tenant's budget by naming it). With no keys the door is open:
the request's `user` field names the tenant, else `default`. A budget for one request rides in
the body as `budget` (the `openai` client's `extra_body`).

Errors come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400 a bad
request (or one the marketplace cannot make a task of), 401 a missing or unknown key, 402 over
budget (the auction refused the task), 404 an unknown model, 502 the winner failed without an
answer, 503 no agent took the task (or the marketplace cannot be reached), 504 no outcome in
time.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from marketplace.client import InvalidTask, Outcome, Refused, SubmitError, SubmitTimeout
from marketplace.shared.config import ConfigError, ServeConfig
from schemas.events import MAX_ANSWER_TOKENS, MAX_PROMPT, Id

MODEL = "sale"
_TENANT = TypeAdapter(Id)


class OpenAIError(Exception):
    """An error answered in OpenAI's shape with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_
        self.code, self.param, self.headers = code, param, dict(headers or {})

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


# --- the request ----------------------------------------------------------------------------


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ...: accepted, not used

    role: str = Field(min_length=1)
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """A chat completion request. OpenAI's parameters are honoured (those declared here),
    refused (`REFUSED`) or accepted and ignored (the rest): the table is docs/front-door.md."""

    model_config = ConfigDict(extra="allow")  # OpenAI's newer parameters: accepted, ignored

    model: str
    messages: list[Message] = Field(min_length=1)
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    budget: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_tokens: Annotated[int, Field(ge=1, le=MAX_ANSWER_TOKENS)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_ANSWER_TOKENS)] | None = None
    stop: str | list[str] | None = None

    def cap(self) -> int | None:
        """The cap on the answer's tokens: `max_tokens` or its newer name, which must agree."""
        old, new = self.max_tokens, self.max_completion_tokens
        if old is not None and new is not None and old != new:
            message = f"max_tokens ({old}) and max_completion_tokens ({new}) differ: send one"
            raise OpenAIError(400, message, param="max_completion_tokens", code="invalid_value")
        return new if new is not None else old

    def stops(self) -> list[str]:
        """The stop sequences, at most 4 as OpenAI takes them."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS or not all(stops):
            message = f"stop: up to {MAX_STOPS} non-empty strings"
            raise OpenAIError(400, message, param="stop", code="invalid_value")
        return stops


MAX_STOPS = 4


def _given(value: Any) -> bool:
    """Whether a parameter asks for something: present, not null, not empty."""
    return value is not None and value != [] and value != {}


def _not(*allowed: Any) -> Callable[[Any], bool]:
    return lambda value: _given(value) and value not in allowed


# What the market cannot do, refused with a 400 naming the parameter: (parameter, whether a
# value asks for it, why). The winner answers once, as text, from its own model, with no
# tools and no view of its token probabilities.
REFUSED: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("n", _not(1), "one answer per request: the auction awards one winner"),
    ("tools", _given, "the agents call no tools of the client's"),
    ("tool_choice", _not("none"), "the agents call no tools of the client's"),
    ("functions", _given, "the agents call no functions of the client's"),
    ("function_call", _not("none"), "the agents call no functions of the client's"),
    ("logprobs", _not(False), "the answer's log-probabilities are not returned"),
    ("top_logprobs", _not(0), "the answer's log-probabilities are not returned"),
    ("logit_bias", _given, "the winner's model is its own: no token biases"),
    ("response_format", _not({"type": "text"}), "the answer is plain text: no JSON mode"),
    ("modalities", _not(["text"]), "the answer is text only"),
    ("audio", _given, "the answer is text only"),
    ("prediction", _given, "no predicted outputs: the winner writes its answer anew"),
    ("web_search_options", _given, "no web search: a search task goes through `sale submit`"),
)


def refuse_what_the_market_cannot_do(body: ChatRequest) -> None:
    """A 400 naming the first parameter asking for what no auction can give."""
    extra = body.model_extra or {}
    for name, asks, why in REFUSED:
        if name in extra and asks(extra[name]):
            value = extra[name]
            shown = f"={json.dumps(value)}" if not isinstance(value, list | dict) else ""
            message = f"{name}{shown[:60]} is not supported: {why}"
            raise OpenAIError(400, message, param=name, code="unsupported_parameter")


def prompt_of(messages: list[Message]) -> str:
    """One prompt from the conversation: a lone message as it is, several as `role: text`
    paragraphs (the task is one prompt; the winner sees the whole exchange)."""
    texts = [(m.role, _text(m, i)) for i, m in enumerate(messages)]
    texts = [(role, text) for role, text in texts if text.strip()]
    if not texts:
        raise OpenAIError(400, "the messages hold no text", param="messages")
    prompt = texts[0][1] if len(texts) == 1 else "\n\n".join(f"{r}: {t}" for r, t in texts)
    if len(prompt) > MAX_PROMPT:
        message = f"the prompt is {len(prompt)} characters, more than {MAX_PROMPT}"
        raise OpenAIError(400, message, param="messages", code="context_length_exceeded")
    return prompt


def _text(message: Message, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type", "untyped")
            raise OpenAIError(
                400, f"only text content is supported, not {kind!r}", param=f"messages.{index}"
            )
        parts.append(part["text"])
    return "\n".join(parts)


# --- who is asking --------------------------------------------------------------------------


def load_keys(serve: ServeConfig, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """API key → tenant, read from the environment variables `[serve].keys` names; an unset
    one fails at start naming the field."""
    keys: dict[str, str] = {}
    for tenant, var in serve.keys.items():
        key = env.get(var, "")
        if not key:
            raise ConfigError(f"[serve].keys.{tenant}: environment variable {var} is not set")
        if key in keys:
            raise ConfigError(f"[serve].keys.{tenant}: the same key as tenant {keys[key]}")
        keys[key] = tenant
    return keys


def tenant_of(keys: Mapping[str, str], authorization: str | None, user: str | None) -> str:
    """The tenant a request spends for (see the module's docstring)."""
    if not keys:
        name = user or "default"
        try:
            return _TENANT.validate_python(name)
        except ValidationError:
            message = f"user {name[:40]!r} is not a tenant name (letters, digits, _.:-)"
            raise OpenAIError(400, message, param="user") from None
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise OpenAIError(
            401, "no API key: send Authorization: Bearer <key>", code="invalid_api_key"
        )
    found = None
    for known, tenant in keys.items():  # every key compared, in constant time
        if hmac.compare_digest(known.encode(), key.strip().encode()):
            found = tenant
    if found is None:
        raise OpenAIError(401, "incorrect API key", code="invalid_api_key")
    return found


# --- the answer -----------------------------------------------------------------------------


def sale_headers(answer: Outcome) -> dict[str, str]:
    headers = {"x-sale-task-id": answer.task_id, "x-sale-status": answer.status}
    if answer.winner_agent_id:
        headers["x-sale-winner"] = answer.winner_agent_id
    headers["x-sale-cost"] = f"{answer.cost or 0.0:.9g}"
    if answer.mechanism:
        headers["x-sale-mechanism"] = answer.mechanism
    return headers


def metadata(answer: Outcome) -> dict[str, str]:
    """The sale's facts as OpenAI's `metadata` holds them: strings only, absent when unknown."""
    facts = {
        "task_id": answer.task_id,
        "status": answer.status,
        "passed": None if answer.passed is None else str(bool(answer.passed)).lower(),
        "winner": answer.winner_agent_id,
        "winner_model": answer.model,
        "cost": f"{answer.cost or 0.0:.9g}",
        "mechanism": answer.mechanism,
        "reason": answer.reason,
        "error": answer.error,
    }
    return {key: value for key, value in facts.items() if value}


def usage_of(answer: Outcome) -> dict[str, int]:
    prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def failure(answer: Outcome) -> OpenAIError | None:
    """The error an outcome without an answer is, or None: an answer (a failed verification
    with an output is still the winner's answer: its status says so)."""
    headers = sale_headers(answer)
    why = ": ".join(x for x in (answer.reason, answer.detail) if x)
    why = f" ({why})" if why else ""
    if answer.status in ("passed", "answered") or (answer.status == "failed" and answer.output):
        return None
    if answer.status in ("no_bids", "no_eligible_bids"):
        message = f"no agent took task {answer.task_id}{why}"
        return OpenAIError(503, message, "server_error", "no_bids", headers=headers)
    if answer.status == "refused":
        message = f"task {answer.task_id} refused{why}"
        return OpenAIError(402, message, "insufficient_quota", "over_budget", headers=headers)
    message = f"task {answer.task_id} ended {answer.status} without an answer{why}"
    return OpenAIError(502, message, "server_error", "execution_failed", headers=headers)


@dataclass(frozen=True)
class Asked:
    """What the request asks of the answer's shape: its cap on tokens and its stop strings."""

    cap: int | None = None
    stops: tuple[str, ...] = ()

    def shaped(self, answer: Outcome) -> tuple[str, str]:
        """The answer's text and finish reason: cut before the first stop string ("stop");
        "length" when the answer took every token the cap allowed (the winner's model was
        cut there); else "stop"."""
        text = answer.output or ""
        cuts = [text.find(s) for s in self.stops if s in text]
        if cuts:
            return text[: min(cuts)], "stop"
        cut = self.cap is not None and (answer.answer_tokens or 0) >= self.cap
        return text, "length" if cut else "stop"


def completion(answer: Outcome, model: str, created: int, asked: Asked) -> dict[str, Any]:
    text, finish = asked.shaped(answer)
    return {
        "id": f"chatcmpl-{answer.task_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": usage_of(answer),
        "system_fingerprint": None,
        "metadata": metadata(answer),
    }


async def chunks(
    answer: Outcome, model: str, created: int, usage: bool, asked: Asked
) -> AsyncIterator[str]:
    """The answer as a stream: the whole text in one chunk (the auction answers at once, not
    token by token), the finish, the usage if asked for, then [DONE]."""
    text, finish = asked.shaped(answer)
    base = {"id": f"chatcmpl-{answer.task_id}", "object": "chat.completion.chunk"}
    base |= {"created": created, "model": model, "metadata": metadata(answer)}
    delta = {"role": "assistant", "content": text}
    yield _event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield _event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage:
        yield _event({**base, "choices": [], "usage": usage_of(answer)})
    yield "data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


# --- the routes -----------------------------------------------------------------------------


class Asks(Protocol):
    """What the door asks the marketplace through: `Client.ask` (`front_door.link.Link` in
    `sale serve`, a stand-in in tests)."""

    async def ask(self, prompt: str, **options: Any) -> Outcome: ...


@dataclass(frozen=True)
class Door:
    """What the routes need: the marketplace's client (or a stand-in with its `ask`), the
    mechanism the marketplace runs, how long a request may wait, and the API keys (empty: an
    open door)."""

    client: Asks | None
    mechanism: str
    timeout_s: float = 300.0
    keys: Mapping[str, str] = field(default_factory=dict)

    def models(self) -> list[str]:
        return [MODEL, f"{MODEL}/{self.mechanism}"]

    def model(self, name: str) -> str:
        """The model to answer as, or 404 for one this marketplace does not serve."""
        if name == MODEL:
            return f"{MODEL}/{self.mechanism}"
        if name in self.models():
            return name
        message = f"the model {name!r} does not exist here: use one of {', '.join(self.models())}"
        if name.startswith(f"{MODEL}/"):
            message += f" (this marketplace runs the {self.mechanism} mechanism)"
        raise OpenAIError(404, message, code="model_not_found", param="model")


def router(door: Door) -> APIRouter:
    routes = APIRouter(prefix="/v1")

    @routes.get("/models")
    async def list_models(request: Request) -> dict[str, Any]:
        tenant_of(door.keys, request.headers.get("authorization"), None)
        return {"object": "list", "data": [_model_card(m) for m in door.models()]}

    @routes.get("/models/{name:path}")
    async def get_model(name: str, request: Request) -> dict[str, Any]:
        tenant_of(door.keys, request.headers.get("authorization"), None)
        door.model(name)
        return _model_card(name)

    @routes.post("/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        tenant = tenant_of(door.keys, request.headers.get("authorization"), body.user)
        model = door.model(body.model)
        refuse_what_the_market_cannot_do(body)
        asked = Asked(body.cap(), tuple(body.stops()))
        prompt = prompt_of(body.messages)
        answer = await _ask(door, prompt, tenant, body.budget, asked.cap)
        if (error := failure(answer)) is not None:
            raise error
        created = int(time.time())
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            stream = chunks(answer, model, created, usage, asked)
            return StreamingResponse(
                stream, media_type="text/event-stream", headers=sale_headers(answer)
            )
        body_out = completion(answer, model, created, asked)
        return JSONResponse(body_out, headers=sale_headers(answer))

    return routes


async def _ask(
    door: Door, prompt: str, tenant: str, budget: float | None, max_tokens: int | None
) -> Outcome:
    """The client's answer, or its error as the HTTP error it is: a refusal is the refused
    outcome's 402 (`failure`), and every error of a task that was posted names the task."""
    if door.client is None:
        raise OpenAIError(503, "this front door has no marketplace to ask", "server_error")
    try:
        return await door.client.ask(
            prompt, tenant=tenant, budget=budget, timeout_s=door.timeout_s, max_tokens=max_tokens
        )
    except InvalidTask as exc:
        raise OpenAIError(400, str(exc), param="messages") from None
    except Refused as exc:
        raise failure(exc.outcome) from None
    except SubmitTimeout as exc:
        message = f"no outcome within {door.timeout_s:g} s: {exc}"
        raise OpenAIError(504, message, "server_error", "timeout", headers=_known(exc)) from None
    except SubmitError as exc:
        message = f"the marketplace cannot take the task: {exc}"
        raise OpenAIError(
            503, message, "server_error", "unavailable", headers=_known(exc)
        ) from None


def _known(error: SubmitError) -> dict[str, str]:
    """The x-sale headers of what is known of the task an error is about (none: nothing)."""
    return sale_headers(error.outcome) if error.outcome is not None else {}


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "sale"}
