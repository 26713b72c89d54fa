"""In-process llama.cpp (llama-cpp-python) for the embedded GGUF models.

One thread per model (two threads on two shared cores ran ten times slower). Log-probabilities,
top-k alternatives and the exact entropy are computed here, with numpy, from the raw logits of
each generated step, which a logits processor copies as decoding goes: llama-cpp-python's own
`logprobs` path needs `logits_all`, which makes llama.cpp compute logits for every prompt token
too, and sorts the whole vocabulary in Python for every token (about six times slower). Decoding is
greedy with no repetition penalty. Successive prompts that share a prefix reuse its evaluation
(counted as cached prompt tokens). A chat that ends with an assistant message is continued:
the model writes on from the begun answer.
A completion's `seconds` are the process's CPU-seconds: with one thread, the model's compute,
whatever else shares the cores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agents.llm import Completion, GeneratedToken, LLMError, Message, TokenChoice
from marketplace.shared.config import AgentConfig


class LlamaBackend:
    def __init__(self, model: str, path: Path, context_tokens: int = 4096) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMError(
                "llama-cpp-python is not installed: install the project with the `models` extra"
            ) from exc
        if not path.is_file():
            raise LLMError(f"no model file at {path} (see `sale models install`)")
        self.model = model
        self.llama = Llama(
            model_path=str(path),
            n_ctx=context_tokens,
            n_threads=1,
            n_threads_batch=1,
            logits_all=False,
            verbose=False,
        )
        self._lock = asyncio.Lock()  # one generation at a time: the model keeps state

    @classmethod
    def from_config(cls, config: AgentConfig) -> LlamaBackend:
        if config.tier:
            from agents.install import model_path

            return cls(config.model, model_path(config.tier), config.context_tokens)
        return cls(config.model, config.path, config.context_tokens)

    async def complete(
        self, messages: Sequence[Message], *, max_tokens: int, top_logprobs: int = 5
    ) -> Completion:
        async with self._lock:
            return await asyncio.to_thread(self._complete, list(messages), max_tokens, top_logprobs)

    def _complete(self, messages: list[Message], max_tokens: int, k: int) -> Completion:
        from llama_cpp import LogitsProcessorList

        rows: list[np.ndarray] = []

        def keep(_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
            rows.append(np.array(logits, dtype=np.float64))
            return logits

        held = list(self.llama.input_ids[: self.llama.n_tokens])
        settings = dict(
            max_tokens=max_tokens,
            temperature=0.0,
            repeat_penalty=1.0,
            logits_processor=LogitsProcessorList([keep]),
        )
        start = time.process_time()
        try:
            if messages and messages[-1]["role"] == "assistant":
                response = self.llama.create_completion(**self._continued(messages), **settings)
                text = response["choices"][0]["text"]
            else:
                response = self.llama.create_chat_completion(messages=messages, **settings)
                text = response["choices"][0]["message"]["content"] or ""
        except (ValueError, RuntimeError) as exc:
            raise LLMError(f"llama.cpp failed: {exc}") from exc
        usage = response["usage"]
        prompt, generated = usage["prompt_tokens"], usage["completion_tokens"]
        tokens = self._tokens(rows[:generated], prompt, k)
        # llama-cpp-python's sampler keeps this call's processor (and so `rows`, 1.2 MB a
        # token) alive in a reference cycle the collector may not reach for a long time.
        rows.clear()
        return Completion(
            text=text,
            tokens=tokens,
            prompt_tokens=prompt,
            completion_tokens=generated,
            seconds=time.process_time() - start,
            cached_tokens=_reused(held, list(self.llama.input_ids[:prompt])),
        )

    def _continued(self, messages: list[Message]) -> dict:
        """The prompt and stops that continue the final assistant message: the chat up to it in
        the model's own template, then the begun answer. An answer begun with an open code
        fence ends where the fence closes."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos, bos = self.llama.token_eos(), self.llama.token_bos()
        formatter = Jinja2ChatFormatter(
            template=self.llama.metadata["tokenizer.chat_template"],
            eos_token=self.llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self.llama._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        chat = formatter(messages=messages[:-1])
        begun = messages[-1]["content"]
        prompt = self.llama.tokenize(
            (chat.prompt + begun).encode("utf-8"), add_bos=not chat.added_special, special=True
        )
        stop = chat.stop if isinstance(chat.stop, list) else [chat.stop]
        if begun.count("```") % 2:
            stop = [*stop, "```"]
        return dict(prompt=prompt, stop=stop, stopping_criteria=chat.stopping_criteria)

    def _tokens(self, steps: list[np.ndarray], prompt: int, k: int) -> tuple[GeneratedToken, ...]:
        """Per generated token: its log-probability, the top-k, and the exact entropy.

        `steps` are the logits each generated token was drawn from (a final end-of-text step is
        not a generated token). The last generated token was never fed back, so its id is read
        as the row's argmax (greedy decoding).
        """
        generated = len(steps)
        if generated == 0:
            return ()
        rows = np.stack(steps)
        logz = np.logaddexp.reduce(rows, axis=1, keepdims=True)
        logp = rows - logz
        entropy = -(np.exp(logp) * logp).sum(axis=1)
        fed_back = min(prompt + generated, self.llama.n_tokens)  # input_ids is preallocated
        ids = [int(i) for i in self.llama.input_ids[prompt:fed_back]]
        ids += [int(np.argmax(rows[j])) for j in range(len(ids), generated)]
        out = []
        for j, token_id in enumerate(ids):
            top_ids = np.argpartition(logp[j], -k)[-k:] if k else np.array([], dtype=int)
            top_ids = top_ids[np.argsort(-logp[j][top_ids])]
            out.append(
                GeneratedToken(
                    token=self._text(token_id),
                    logprob=float(logp[j][token_id]),
                    top=tuple(TokenChoice(self._text(int(t)), float(logp[j][t])) for t in top_ids),
                    entropy=float(entropy[j]),
                )
            )
        return tuple(out)

    def _text(self, token_id: int) -> str:
        return self.llama.detokenize([token_id]).decode("utf-8", errors="replace")


def _reused(held: list[int], prompt: list[int]) -> int:
    """Prompt tokens whose evaluation llama.cpp kept from the previous call: the common prefix
    of what it held and the new prompt, less the last prompt token, which it always evaluates."""
    same = 0
    for a, b in zip(held, prompt[:-1], strict=False):
        if a != b:
            break
        same += 1
    return same
