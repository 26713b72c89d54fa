"""`sale replay --verify` after the move to signing v2 (RFC 8785): a log written before it, its
events signed v1 (tests/data/signed_v1.json, made by the code of b0b7ad5), and one signed v2
since, are both believed; a v1 event changed in the log is still caught."""

from __future__ import annotations

import base64
import json

import asyncpg
import pytest

from marketplace.log import provenance
from marketplace.log.store import Incoming, Position, store
from marketplace.shared import signing
from marketplace.shared.migrate import apply_migrations
from schemas.codec import decode
from tests.samples import every_event
from tests.unit.test_signature_migration import FIXTURE, v1_records

pytestmark = pytest.mark.integration


def stored_v1() -> list[Incoming]:
    """The fixture's records as the recorder stored them then: the payload its text."""
    rows = []
    for offset, record in enumerate(json.loads(FIXTURE.read_text(encoding="utf-8"))["records"]):
        event = decode(record["value"])
        rows.append(
            Incoming(
                Position("sale.x", 0, offset),
                b"k",
                event,
                record["value"],
                record["key_id"],
                base64.b64decode(record["signature"]),
            )
        )
    return rows


async def test_replay_believes_a_log_signed_v1_and_v2_and_names_a_changed_v1_event(
    fresh_database: str,
) -> None:
    keyring, _ = v1_records()
    rows = stored_v1()
    private = signing.Ed25519PrivateKey.generate()
    signer = signing.Signer("large", private)
    keyring.add(signing.PublicKey(signer.key_id, "large", "any", signer.public))
    fresh = next(e for e in every_event("v2-0") if e.type == "TaskResult")
    headers = signer.headers(fresh)
    rows.append(
        Incoming.of(
            Position("sale.results", 0, 0),
            b"v2-0",
            fresh,
            signer.key_id,
            base64.b64decode(headers[signing.SIGNATURE_HEADER]),
        )
    )
    bid = next(i for i, row in enumerate(rows) if row.event.type == "BidSubmitted")
    changed = json.loads(rows[bid].payload) | {"price": 99.0}
    rows[bid] = Incoming(
        Position("sale.bids", 0, 99),
        rows[bid].key,
        decode(json.dumps(changed)),
        json.dumps(changed),
        rows[bid].key_id,
        rows[bid].signature,
    )
    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
        await store(conn, rows)
    finally:
        await conn.close()

    log, found = await provenance.read_checked(fresh_database, keyring)
    assert [d.recorded for d in found] == [
        f"BidSubmitted {rows[bid].event.event_id}: signature: does not match the event for key "
        f"{rows[bid].key_id} (small)"
    ]
    assert fresh in log.events
