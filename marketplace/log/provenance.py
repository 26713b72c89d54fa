"""Who vouched for each event in the log: every stored event's signature checked again against
the keyring, so `sale replay --verify` catches a forged event however it got in (a consumer
that did not check, a row written straight into Postgres), not only a decision that does not
add up. Arithmetic alone cannot: a forged, self-consistent `AuctionClosed` adds up.

The log is read once for both checks: each row is decoded once, its signature checked, and the
events replay verifies kept (`read_checked`). Ed25519 verification is most of the cost. The
installed `cryptography` verifies without holding the GIL, so a thread pool could check on a
second core while rows decode; measured on the 2-core development machine, whose cores a model
benchmark kept busy, it did not help, so the check stays in line until it is measured to.
"""

from __future__ import annotations

import base64

import asyncpg

from marketplace.log.gc_pause import paused_gc
from marketplace.log.replay import (
    TYPES,
    Discrepancy,
    Log,
    fetch_log,
    stored_at,
    unreadable_row,
)
from marketplace.shared import signing
from schemas.codec import EventDecodeError, decode
from schemas.events import Event

_ROWS = (
    "SELECT id, task_id, type, payload, key_id, signature FROM events "
    "WHERE type <> 'DeadLetter' ORDER BY id"
)
_REPLAYED = frozenset(TYPES)


async def read_checked(url: str, keyring: signing.Keyring) -> tuple[Log, list[Discrepancy]]:
    """The replay's log (as `replay.read_postgres` reads it) and one discrepancy per stored
    event that its signature does not vouch for, with why, from one read of the log.

    Dead letters are left out: they record what was refused and decide nothing."""
    rows = await fetch_log(url, _ROWS)
    events: list[Event] = []
    unreadable: list[Discrepancy] = []
    found: list[Discrepancy] = []
    with paused_gc():
        for row in rows:
            replayed = row["type"] in _REPLAYED
            try:
                event = decode(row["payload"])
            except EventDecodeError as exc:
                if replayed:
                    unreadable.append(unreadable_row(row["task_id"] or "?", stored_at(row), exc))
                found.append(_refused(row, f"no valid event ({exc})"))
                continue
            if (why := _unvouched(event, row, keyring)) is not None:
                found.append(_refused(row, f"{event.type} {event.event_id}: {why}"))
            if replayed:
                events.append(event)
    return Log("postgres", events, unreadable), found


def _refused(row: asyncpg.Record, why: str) -> Discrepancy:
    where = f"signature of events.id {row['id']}"
    return Discrepancy(row["task_id"] or "-", where, why, "a key that may produce it")


def _unvouched(event: Event, row: asyncpg.Record, keyring: signing.Keyring) -> str | None:
    headers = {}
    if row["key_id"] is not None and row["signature"] is not None:
        headers = {
            signing.KEY_ID_HEADER: row["key_id"].encode(),
            signing.SIGNATURE_HEADER: base64.b64encode(row["signature"]),
        }
    return keyring.check(event, headers)
