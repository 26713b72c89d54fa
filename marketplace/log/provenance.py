"""Who vouched for each event in the log: every stored event's signature checked again against
the keyring, so `sale replay --verify` catches a forged event however it got in (a consumer
that did not check, a row written straight into Postgres), not only a decision that does not
add up. Arithmetic alone cannot: a forged, self-consistent `AuctionClosed` adds up.

Each event is judged by its key's validity when the log stored it (`recorded_at`, the
recorder's clock, not the signer's `occurred_at`, which the signer chooses): what a key signed
before its removal stands, what the log stored after it is named.

The log is read once for both checks: each row is decoded once, its signature checked, and the
events replay verifies kept (`read_checked`). Ed25519 verification is most of the cost, so the
signatures are checked as one batch, on every core (`signing.Keyring.check_many`).
"""

from __future__ import annotations

import base64

import asyncpg

from marketplace.log.gc_pause import paused_gc
from marketplace.log.replay.discrepancy import Discrepancy
from marketplace.log.replay.readers import fetch_log, stored_at
from marketplace.log.replay.replayed_log import TYPES, Log, unreadable_row
from marketplace.shared import signing
from schemas.codec import EventDecodeError, decode
from schemas.events import Event

_ROWS = (
    "SELECT id, task_id, type, payload, key_id, signature, recorded_at FROM events "
    "WHERE type <> 'DeadLetter' ORDER BY id"
)
_REPLAYED = frozenset(TYPES)


async def read_checked(url: str, keyring: signing.Keyring) -> tuple[Log, list[Discrepancy]]:
    """The replay's log (as `readers.read_postgres` reads it) and one discrepancy per stored
    event that its signature does not vouch for, with why, from one read of the log.

    Dead letters are left out: they record what was refused and decide nothing."""
    rows = await fetch_log(url, _ROWS)
    events: list[Event] = []
    unreadable: list[Discrepancy] = []
    found: list[tuple[int, Discrepancy]] = []  # by the row's id: the log's order
    readable: list[tuple[asyncpg.Record, Event]] = []
    with paused_gc():
        for row in rows:
            try:
                readable.append((row, decode(row["payload"])))
            except EventDecodeError as exc:
                if row["type"] in _REPLAYED:
                    unreadable.append(unreadable_row(row["task_id"] or "?", stored_at(row), exc))
                found.append((row["id"], _refused(row, f"no valid event ({exc})")))
        refusals = await keyring.check_many(
            [(event, _headers(row)) for row, event in readable],
            [row["recorded_at"] for row, _ in readable],
        )
        for (row, event), why in zip(readable, refusals, strict=True):
            if why is not None:
                found.append((row["id"], _refused(row, f"{event.type} {event.event_id}: {why}")))
            if row["type"] in _REPLAYED:
                events.append(event)
    return Log("postgres", events, unreadable), [d for _, d in sorted(found, key=lambda f: f[0])]


def _refused(row: asyncpg.Record, why: str) -> Discrepancy:
    where = f"signature of events.id {row['id']}"
    return Discrepancy(row["task_id"] or "-", where, why, "a key that may produce it")


def _headers(row: asyncpg.Record) -> dict[str, bytes]:
    """The signature headers the row's record carried, as the log keeps them."""
    if row["key_id"] is None or row["signature"] is None:
        return {}
    return {
        signing.KEY_ID_HEADER: row["key_id"].encode(),
        signing.SIGNATURE_HEADER: base64.b64encode(row["signature"]),
    }
