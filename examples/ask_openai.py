"""Ask the marketplace through its OpenAI-compatible front door (`sale serve`), as any OpenAI
client would: a plain chat (who answered and what it cost: the x-sale-* headers), an answer
capped by `max_tokens` (its `finish_reason` says when the cap cut it), and two requests the
market cannot do, `n=2` and `tools=[...]`, each refused with a 400 naming the parameter
(docs/front-door.md has the table of every parameter).

    .venv/bin/python examples/ask_openai.py [--base-url http://127.0.0.1:8080/v1] [--api-key KEY]
"""

from __future__ import annotations

import argparse

import openai

ASK = [{"role": "user", "content": "Name three prime numbers."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "is_prime",
            "description": "Whether a number is prime.",
            "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
        },
    }
]


def plain(client: openai.OpenAI) -> tuple[str, dict[str, str]]:
    """A plain chat: the winner's answer and what the x-sale-* headers say of it."""
    raw = client.chat.completions.with_raw_response.create(model="sale", messages=ASK)
    headers = {k: v for k, v in raw.headers.items() if k.startswith("x-sale-")}
    return raw.parse().choices[0].message.content, headers


def capped(client: openai.OpenAI, max_tokens: int = 3) -> tuple[str, str]:
    """An answer of at most `max_tokens` tokens: its text and its finish reason ("length"
    when the cap cut it)."""
    answer = client.chat.completions.create(model="sale", messages=ASK, max_tokens=max_tokens)
    choice = answer.choices[0]
    return choice.message.content, choice.finish_reason


def refused(client: openai.OpenAI, **asked: object) -> openai.BadRequestError:
    """The 400 a request the market cannot do gets (`n=2`, `tools=[...]`)."""
    try:
        client.chat.completions.create(model="sale", messages=ASK, **asked)
    except openai.BadRequestError as error:
        return error
    raise AssertionError(f"{', '.join(asked)}: accepted, but the market cannot do it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--api-key", default="none", help="a key of [serve.keys], if any")
    args = parser.parse_args(argv)
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0)

    text, sale = plain(client)
    print(text)
    print(f"-- task {sale['x-sale-task-id']}: {sale['x-sale-status']}, winner", end=" ")
    print(f"{sale.get('x-sale-winner')}, cost {sale['x-sale-cost']}")
    text, finish = capped(client)
    print(f"max_tokens=3: {text!r} (finish_reason {finish})")
    for name, asked in (("n=2", {"n": 2}), ("tools=[...]", {"tools": TOOLS})):
        error = refused(client, **asked)
        why = error.body["message"] if isinstance(error.body, dict) else error.message
        print(f"{name}: {error.status_code} {error.code} (param {error.param}): {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
