"""Who vouched for each event in the log: every stored event's signature checked again against
the keyring, so `sale replay --verify` catches a forged event however it got in (a consumer
that did not check, a row written straight into Postgres), not only a decision that does not
add up. Arithmetic alone cannot: a forged, self-consistent `AuctionClosed` adds up."""

from __future__ import annotations

import base64

import asyncpg

from marketplace.log.replay import Discrepancy
from marketplace.shared import signing
from schemas.codec import EventDecodeError, decode

_ROWS = "SELECT id, task_id, payload, key_id, signature FROM events WHERE type <> 'DeadLetter'"


async def check(url: str, keyring: signing.Keyring) -> list[Discrepancy]:
    """One discrepancy per stored event that its signature does not vouch for, with why.

    Dead letters are left out: they record what was refused and decide nothing."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(_ROWS + " ORDER BY id")
    finally:
        await conn.close()
    found = []
    for row in rows:
        if (why := _refused(row, keyring)) is not None:
            where = f"signature of events.id {row['id']}"
            found.append(
                Discrepancy(row["task_id"] or "-", where, why, "a key that may produce it")
            )
    return found


def _refused(row: asyncpg.Record, keyring: signing.Keyring) -> str | None:
    try:
        event = decode(row["payload"])
    except EventDecodeError as exc:
        return f"no valid event ({exc})"
    headers = {}
    if row["key_id"] is not None and row["signature"] is not None:
        headers = {
            signing.KEY_ID_HEADER: row["key_id"].encode(),
            signing.SIGNATURE_HEADER: base64.b64encode(row["signature"]),
        }
    reason = keyring.check(event, headers)
    return None if reason is None else f"{event.type} {event.event_id}: {reason}"
