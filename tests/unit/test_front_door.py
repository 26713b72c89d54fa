"""The front door's HTTP shapes, read by the official `openai` client over the ASGI app in
process: the chat.completion answer, the headers and metadata, and every error in OpenAI's
shape with its status. The marketplace behind the door is a stand-in for the client here, with
its `ask`, its `Outcome` and its errors (the real client runs in
tests/integration/test_front_door.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pytest

from marketplace.client import InvalidTask, Outcome, Refused, SubmitError, SubmitTimeout
from marketplace.services.front_door.app import create_app
from marketplace.shared.config import Config, ConfigError, ServeConfig, parse_config
from schemas.events import Usage

USER = [{"role": "user", "content": "What is 2 + 2?"}]


def outcome(**fields: Any) -> Outcome:
    """An answered general request, as the client folds it, with `fields` changed."""
    answered = {
        "task_id": "task-1",
        "status": "answered",
        "winner_agent_id": "small",
        "model": "scripted-small",
        "output": "4",
        "cost": 0.00125,
        "usage": Usage(prompt_tokens=12, completion_tokens=7),
        "mechanism": "lean",
    }
    return Outcome(**{**answered, **fields})


REFUSED = Outcome(
    task_id="task-1", status="refused", reason="over_budget", detail="acme has spent 1 of 1"
)


class StandIn:
    """Answers every ask with `answer` (or raises it) and keeps what it was asked."""

    def __init__(self, answer: Outcome | Exception | None = None) -> None:
        self.answer = answer or outcome()
        self.asked: list[dict[str, Any]] = []
        self.caps: list[int | None] = []  # each ask's max_tokens

    async def ask(
        self,
        prompt: str,
        tenant: str = "default",
        budget: float | None = None,
        timeout_s=300.0,
        max_tokens: int | None = None,
    ) -> Outcome:
        self.asked.append({"prompt": prompt, "tenant": tenant, "budget": budget})
        self.caps.append(max_tokens)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


Door = Callable[..., openai.AsyncOpenAI]


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    """Opens the door on a stand-in: `door(stand_in, config, env, key)` → an openai client
    (`raw=True`: a plain HTTP client)."""
    http_clients: list[httpx2.AsyncClient] = []

    def open_door(
        stand_in: StandIn,
        config: Config | None = None,
        env: dict | None = None,
        key: str = "none",
        raw: bool = False,
    ) -> openai.AsyncOpenAI | httpx2.AsyncClient:
        app = create_app(stand_in, config or Config(), env or {})
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://door")
        http_clients.append(http)
        if raw:  # plain HTTP, for what the openai client would not send
            return http
        return openai.AsyncOpenAI(
            api_key=key, base_url="http://door/v1", http_client=http, max_retries=0
        )

    yield open_door
    for http in http_clients:
        await http.aclose()


async def test_a_chat_completion_is_the_auction_s_answer_in_openai_s_shape(door: Door) -> None:
    stand_in = StandIn()
    client = door(stand_in)
    raw = await client.chat.completions.with_raw_response.create(
        model="sale", messages=USER, extra_body={"budget": 0.5}
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id == "chatcmpl-task-1"
    assert completion.model == "sale/lean"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "4"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 7)
    assert completion.usage.total_tokens == 19
    assert raw.headers["x-sale-task-id"] == "task-1"
    assert raw.headers["x-sale-winner"] == "small"
    assert float(raw.headers["x-sale-cost"]) == pytest.approx(0.00125)
    assert raw.headers["x-sale-status"] == "answered"
    assert completion.metadata == {  # OpenAI's metadata: strings only
        "task_id": "task-1",
        "status": "answered",
        "winner": "small",
        "winner_model": "scripted-small",
        "cost": "0.00125",
        "mechanism": "lean",
    }
    assert stand_in.asked == [{"prompt": "What is 2 + 2?", "tenant": "default", "budget": 0.5}]


async def test_a_conversation_becomes_one_prompt_of_role_paragraphs(door: Door) -> None:
    stand_in = StandIn()
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "2 + 2?"}]},
    ]
    await door(stand_in).chat.completions.create(model="sale/lean", messages=messages)
    assert stand_in.asked[0]["prompt"] == "system: Answer briefly.\n\nuser: 2 + 2?"


async def test_the_models_are_sale_and_the_mechanism_it_runs(door: Door) -> None:
    paper = Config.model_validate({"auction": {"mechanism": "paper"}})
    models = await door(StandIn(), paper).models.list()
    assert [m.id for m in models.data] == ["sale", "sale/paper"]
    with pytest.raises(openai.NotFoundError) as raised:
        await door(StandIn(), paper).chat.completions.create(model="sale/lean", messages=USER)
    assert raised.value.code == "model_not_found"
    assert "runs the paper mechanism" in raised.value.message


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (InvalidTask("the prompt cannot be a task"), 400, None),
        (Refused(REFUSED), 402, "over_budget"),
        (SubmitTimeout("task-1", 2.0, outcome(status="open", output=None)), 504, "timeout"),
        (SubmitError("the broker does not answer"), 503, "unavailable"),
        (outcome(status="no_bids", output=None, winner_agent_id=None), 503, "no_bids"),
        (outcome(status="no_eligible_bids", output=None, winner_agent_id=None), 503, "no_bids"),
        (outcome(status="refused", output="", reason="over budget"), 402, "over_budget"),
        (outcome(status="failed", output="", reason="the agent crashed"), 502, "execution_failed"),
    ],
)
async def test_what_went_wrong_is_an_openai_error_with_its_status(
    door: Door, answer: Outcome | Exception, status: int, code: str
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        await door(StandIn(answer)).chat.completions.create(model="sale", messages=USER)
    error = raised.value
    assert error.status_code == status
    assert error.code == code
    assert set(error.body) == {"message", "type", "param", "code"}
    known = answer if isinstance(answer, Outcome) else getattr(answer, "outcome", None)
    if known is not None:  # the task was posted: the operator can look it up
        assert error.response.headers["x-sale-task-id"] == "task-1"
        assert error.response.headers["x-sale-status"] == known.status
    else:
        assert "x-sale-task-id" not in error.response.headers


async def test_a_refusal_says_why_in_the_message(door: Door) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        await door(StandIn(Refused(REFUSED))).chat.completions.create(model="sale", messages=USER)
    assert raised.value.type == "insufficient_quota"
    assert (
        raised.value.body["message"] == "task task-1 refused (over_budget: acme has spent 1 of 1)"
    )


async def test_a_failed_verification_still_answers_with_its_status(door: Door) -> None:
    stand_in = StandIn(outcome(status="failed", passed=False, output="5"))
    raw = await door(stand_in).chat.completions.with_raw_response.create(
        model="sale", messages=USER
    )
    assert raw.parse().choices[0].message.content == "5"
    assert raw.headers["x-sale-status"] == "failed"
    assert raw.parse().metadata["passed"] == "false"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "sale", "messages": []}, "messages"),
        ({"model": "sale", "messages": [{"role": "user"}]}, "messages"),
        ({"model": "sale", "messages": USER, "budget": -1}, "budget"),
        ({"messages": USER}, "model"),
        ({"model": "sale", "messages": USER, "user": "no spaces please"}, "user"),
        (
            {
                "model": "sale",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages.0",
        ),
    ],
)
async def test_a_bad_request_is_a_400_naming_the_field(door: Door, body: dict, param: str) -> None:
    stand_in = StandIn()
    response = await door(stand_in, raw=True).post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert stand_in.asked == []


async def test_a_body_that_is_not_json_is_a_400(door: Door) -> None:
    response = await door(StandIn(), raw=True).post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


async def test_an_unknown_path_is_a_404_in_the_same_shape(door: Door) -> None:
    response = await door(StandIn(), raw=True).get("/v1/engines")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_with_keys_the_bearer_key_names_the_tenant(door: Door) -> None:
    config = Config(serve=ServeConfig(keys={"acme": "ACME_KEY", "zeta": "ZETA_KEY"}))
    env = {"ACME_KEY": "sk-acme", "ZETA_KEY": "sk-zeta"}
    stand_in = StandIn()
    await door(stand_in, config, env, key="sk-acme").chat.completions.create(
        model="sale", messages=USER, user="zeta"
    )
    assert stand_in.asked[0]["tenant"] == "acme"  # `user` names no tenant when keys do
    with pytest.raises(openai.AuthenticationError) as raised:
        await door(stand_in, config, env, key="sk-wrong").chat.completions.create(
            model="sale", messages=USER
        )
    assert raised.value.code == "invalid_api_key"
    keyless = await door(stand_in, config, env, raw=True).post(
        "/v1/chat/completions", json={"model": "sale", "messages": USER}
    )
    assert keyless.status_code == 401
    assert "no API key" in keyless.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        await door(stand_in, config, env, key="sk-wrong").models.list()
    assert len(stand_in.asked) == 1


async def test_an_open_door_takes_the_tenant_from_the_user_field(door: Door) -> None:
    stand_in = StandIn()
    await door(stand_in).chat.completions.create(model="sale", messages=USER, user="acme")
    assert stand_in.asked[0]["tenant"] == "acme"


def test_a_key_variable_that_is_not_set_fails_at_start_naming_the_field() -> None:
    config = Config(serve=ServeConfig(keys={"acme": "ACME_KEY"}))
    with pytest.raises(ConfigError, match=r"\[serve\]\.keys\.acme: .*ACME_KEY"):
        create_app(StandIn(), config, {})


def test_a_bad_serve_setting_fails_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"serve\.port"):
        parse_config({"serve": {"port": 70000}}, env={})
    with pytest.raises(ConfigError, match=r"serve\.keys"):
        parse_config({"serve": {"keys": {"acme": "not a variable"}}}, env={})


async def test_a_stream_carries_the_whole_answer_then_the_usage(door: Door) -> None:
    stream = await door(StandIn()).chat.completions.create(
        model="sale", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "4"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == 19


async def test_without_a_database_the_dashboard_and_metrics_say_so(door: Door) -> None:
    http = door(StandIn(), raw=True)
    response = await http.get("/api/auctions")
    assert response.status_code == 503
    assert "no database configured" in response.json()["error"]["message"]
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert "sale_log_up 0.0" in metrics.text
    page = await http.get("/dashboard")
    assert page.status_code == 200 and "operator's dashboard" in page.text
    script = await http.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and "api/auctions" in script.text


# --- what the market does with OpenAI's parameters (docs/front-door.md) -----------------------

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("tools", [TOOL]),
        ("tool_choice", "required"),
        ("functions", [TOOL["function"]]),
        ("function_call", "auto"),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("logit_bias", {"50256": -100}),
        ("response_format", {"type": "json_object"}),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("prediction", {"type": "content", "content": "4"}),
        ("web_search_options", {"search_context_size": "low"}),
    ],
)
async def test_what_the_market_cannot_do_is_a_400_naming_the_parameter(
    door: Door, param: str, value: object
) -> None:
    stand_in = StandIn()
    body = {"model": "sale", "messages": USER, param: value}
    response = await door(stand_in, raw=True).post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        "unsupported_parameter",
    )
    assert "not supported" in error["message"]
    assert stand_in.asked == []  # refused before any task is posted


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 1),
        ("tools", []),
        ("tool_choice", "none"),
        ("logprobs", False),
        ("response_format", {"type": "text"}),
        ("modalities", ["text"]),
        ("temperature", 0.2),
        ("top_p", 0.5),
        ("seed", 7),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("store", False),
        ("reasoning_effort", "low"),
        ("parallel_tool_calls", False),
    ],
)
async def test_what_asks_nothing_the_market_cannot_do_is_accepted(
    door: Door, param: str, value: object
) -> None:
    stand_in = StandIn()
    body = {"model": "sale", "messages": USER, param: value}
    response = await door(stand_in, raw=True).post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert len(stand_in.asked) == 1


async def test_max_tokens_caps_the_answer_and_a_cut_answer_finishes_with_length(
    door: Door,
) -> None:
    cut = StandIn(outcome(output="Four is", answer_tokens=2))
    client = door(cut)
    answer = await client.chat.completions.create(model="sale", messages=USER, max_tokens=2)
    assert cut.caps == [2]  # on the task: the agents cap their answer at it
    assert answer.choices[0].finish_reason == "length"
    await client.chat.completions.create(model="sale", messages=USER, max_completion_tokens=2)
    assert cut.caps == [2, 2]  # OpenAI's newer name for it
    roomy = StandIn(outcome(answer_tokens=1))
    answer = await door(roomy).chat.completions.create(model="sale", messages=USER, max_tokens=5)
    assert answer.choices[0].finish_reason == "stop"
    stream = await door(cut).chat.completions.create(
        model="sale", messages=USER, max_tokens=2, stream=True
    )
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert finishes[-1] == "length"
    await door(roomy).chat.completions.create(model="sale", messages=USER)
    assert roomy.caps == [5, None]  # no cap asked: each agent's own


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 32_769}, "max_tokens"),
        ({"max_tokens": 1_000_000_000}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "max_completion_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
async def test_a_cap_out_of_range_is_a_400_naming_it(door: Door, fields: dict, param: str) -> None:
    stand_in = StandIn()
    body = {"model": "sale", "messages": USER, **fields}
    response = await door(stand_in, raw=True).post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert stand_in.asked == []


async def test_stop_cuts_the_answer_before_the_first_stop_string(door: Door) -> None:
    stand_in = StandIn(outcome(output="1. Paris\n2. Rome\n3. Oslo"))
    answer = await door(stand_in).chat.completions.create(
        model="sale", messages=USER, stop=["\n3.", "\n2."]
    )
    assert answer.choices[0].message.content == "1. Paris"
    assert answer.choices[0].finish_reason == "stop"
