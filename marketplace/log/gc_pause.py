"""The cyclic garbage collector held off while a batch of events is decoded.

Decoding a batch allocates many small containers (pydantic models, their dicts and lists), so
the collector runs again and again, each time walking every object still alive: the batch so
far, and the whole replayed log. That walking, not the parsing, was most of the cost of
decoding an event (`sale ingest-bench --profile` shows what is left). The events hold no
reference cycles worth collecting early, so the collector waits until the batch is done and
then runs as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """No automatic collection inside the block; the collector's state is restored after
    (nested blocks leave it off until the outermost one ends)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
