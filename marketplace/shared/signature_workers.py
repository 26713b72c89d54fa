"""Ed25519 verification of a batch in worker processes, so it runs on every core.

A recorder's fetch or a replayed log is thousands of signatures, most of a consumer's CPU.
Threads cannot share that out: libsodium lets go of the GIL while it verifies, but each thread
must take the GIL back between two signatures, and behind an event loop that is busy (the
recorder storing the previous batch) it waits a whole switch interval each time, and a batch
took many times longer than checking it in line. Processes have no such queue.

What is verified may be made in the worker too (`make`: a v2 signature covers the canonical
JSON of the event, about as costly to make as to verify), so that a batch's whole cost is shared
out, not only the verifying.

Workers are spawned, not forked (the parent holds threads), so, as with any spawning in
Python, a worker imports the program's main module again: a script of your own that runs a
service must keep its start under `if __name__ == "__main__":`. If a worker cannot start, the
batch is checked in the calling process, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import nacl.signing
from nacl.exceptions import BadSignatureError

log = logging.getLogger(__name__)

WORKERS = max(2, os.cpu_count() or 2)
POOL_FROM = 256  # below this many signatures, sending them to workers costs more than it saves
PARENT_CHECK_S = 1.0
Claim = tuple[bytes, bytes, bytes]  # (raw public key, message, signature)
# What turns a claim's message into the bytes signed, in whichever process verifies it: a
# module-level function (workers receive it by name); a ValueError from it fails the claim.
Make = Callable[[bytes], bytes] | None

_pool: ProcessPoolExecutor | None = None


def verify_each(claims: Sequence[Claim], make: Make = None) -> list[bool]:
    """Whether each signature is its public key's over its message (`make` of it, if given),
    in this process."""
    keys: dict[bytes, nacl.signing.VerifyKey] = {}
    verdicts = []
    for public, message, signature in claims:
        key = keys.get(public)
        if key is None:
            key = keys[public] = nacl.signing.VerifyKey(public)
        try:
            key.verify(make(message) if make is not None else message, signature)
            verdicts.append(True)
        except (BadSignatureError, ValueError):
            verdicts.append(False)
    return verdicts


async def verify_all(claims: Sequence[Claim], make: Make = None) -> list[bool]:
    """`verify_each`, split between the worker processes for a large batch; the event loop
    runs on meanwhile. A pool that broke (a worker killed) is replaced, this batch verified
    here."""
    if len(claims) < POOL_FROM:
        return verify_each(claims, make)
    size = -(-len(claims) // WORKERS)
    chunks = [claims[i : i + size] for i in range(0, len(claims), size)]
    loop = asyncio.get_running_loop()
    try:
        pool = _workers()
        done = await asyncio.gather(
            *(loop.run_in_executor(pool, verify_each, c, make) for c in chunks)
        )
    except BrokenProcessPool:
        log.warning("the signature workers stopped; starting new ones, this batch checked here")
        _shutdown()
        return verify_each(claims, make)
    return [verdict for chunk in done for verdict in chunk]


def _workers() -> ProcessPoolExecutor:
    """Started on first use, by spawning: the caller may hold threads a fork would copy."""
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(
            WORKERS,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_outlive_no_parent,
            initargs=(os.getpid(),),
        )
    return _pool


def _outlive_no_parent(parent: int) -> None:
    """In a worker: exits once its parent is gone, killed with no chance to stop the pool (a
    crashed service must not leave workers behind)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="sale-parent-watch").start()


def _shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
