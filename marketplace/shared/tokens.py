"""Recounting a bid's tokens with its model's own tokenizer, where that tokenizer is at hand.

A bid states how many tokens its plan took (`plan_tokens`), and the paper's cost term is
price × plan_tokens: an agent that understated it would look cheaper than it is. The count
cannot be checked exactly — an agent counts what its model generated, and a plan's text can
tokenize a token or two differently once detokenized, and a lean draft's count also covers the
prose and fix rounds around the program it keeps — but it can be bounded from below: the plan's
text holds at least `recount` tokens, so a bid that says much fewer is refused. The tokenizers
known are those of the local GGUF models (llama.cpp loads a model's vocabulary alone, without its
weights); for any other model, and without llama-cpp-python, nothing is recounted.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

SLACK_FRACTION = 0.9  # a re-tokenized text may merge or split a few tokens
SLACK_TOKENS = 2


class Tokenizer(Protocol):
    def tokenize(self, text: bytes, add_bos: bool = ..., special: bool = ...) -> list[int]: ...


class Tokenizers:
    """The tokenizers of the models whose vocabulary files are known, loaded on first use."""

    def __init__(self, vocabularies: Mapping[str, Path] | None = None) -> None:
        self.vocabularies = dict(vocabularies or {})
        self._loaded: dict[str, Tokenizer | None] = {}

    def count(self, model: str, text: str) -> int | None:
        """How many tokens `text` is to `model`, or None when its tokenizer is not known."""
        tokenizer = self._tokenizer(model)
        if tokenizer is None:
            return None
        return len(tokenizer.tokenize(text.encode(), add_bos=False, special=False))

    def understated(self, model: str, text: str, stated: int, given: str = "") -> int | None:
        """The recount when `stated` is below what `text` must hold, else None. Text the model
        was `given` may be in `text` without being generated (a draft continues the task's own
        code): its tokens are taken off the recount."""
        recount = self.count(model, text)
        if recount is None:
            return None
        recount -= self.count(model, given) if given else 0
        return recount if stated < int(recount * SLACK_FRACTION) - SLACK_TOKENS else None

    def _tokenizer(self, model: str) -> Tokenizer | None:
        if model not in self._loaded:
            self._loaded[model] = _load(self.vocabularies.get(model))
        return self._loaded[model]


def _load(path: Path | None) -> Tokenizer | None:
    """The vocabulary of the GGUF file at `path` (no weights, well under a second), or None."""
    if path is None or not path.is_file():
        return None
    try:
        import llama_cpp
    except ImportError:
        return None
    _QUIET.append(llama_cpp.llama_log_callback(_silent))  # kept: llama.cpp holds a pointer
    llama_cpp.llama_log_set(_QUIET[-1], ctypes.c_void_p(0))  # a load prints context warnings
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


_QUIET: list[object] = []


def _silent(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's log, unheard: a vocabulary load has nothing to tell a service's reader."""
