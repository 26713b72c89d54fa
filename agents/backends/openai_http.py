"""Any OpenAI-compatible chat server (llama.cpp server, vLLM, Ollama, hosted APIs) over HTTP.

Retries transient failures (connection errors, timeouts, 429 and 5xx) with exponential backoff;
a bad endpoint or key fails with a message that says which. Entropy uses the top-k estimator.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

import openai

from agents.llm import Completion, GeneratedToken, LLMError, Message, TokenChoice
from marketplace.shared.config import AgentConfig

RETRIES = 4
BACKOFF_S = 0.5


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str,
        timeout_s: float = 300.0,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self.model = model
        self.backoff_s = backoff_s
        self.base_url = base_url
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
        )

    @classmethod
    def from_config(cls, config: AgentConfig) -> OpenAIBackend:
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        return cls(config.model, config.endpoint, key or "not-needed")

    async def complete(
        self, messages: Sequence[Message], *, max_tokens: int, top_logprobs: int = 5
    ) -> Completion:
        start = time.monotonic()
        for attempt in range(RETRIES + 1):
            try:
                response = await self.client.chat.completions.create(
                    model=self.model,
                    messages=list(messages),
                    max_tokens=max_tokens,
                    temperature=0.0,
                    logprobs=top_logprobs > 0,
                    top_logprobs=top_logprobs or None,
                )
                break
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise LLMError(f"{self.base_url}: the API key was refused ({exc})") from exc
            except openai.NotFoundError as exc:
                raise LLMError(
                    f"{self.base_url}: no such endpoint or model {self.model!r}"
                ) from exc
            except (
                openai.APIConnectionError,
                openai.APITimeoutError,
                openai.RateLimitError,
                openai.InternalServerError,
            ) as exc:
                if attempt == RETRIES:
                    raise LLMError(
                        f"{self.base_url}: {type(exc).__name__} after {RETRIES + 1} attempts: {exc}"
                    ) from exc
                await asyncio.sleep(self.backoff_s * 2**attempt)
        choice = response.choices[0]
        tokens = tuple(
            GeneratedToken(
                item.token,
                item.logprob,
                tuple(TokenChoice(t.token, t.logprob) for t in item.top_logprobs or ()),
            )
            for item in (choice.logprobs.content or [] if choice.logprobs else [])
        )
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            tokens=tokens,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else len(tokens),
            seconds=time.monotonic() - start,
        )
