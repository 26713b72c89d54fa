"""Signing v2 (RFC 8785) and the migration: records signed v1, before it, still verify.

tests/data/signed_v1.json holds records signed by the code of commit b0b7ad5 (v1 bytes, before
TaskPosted.max_tokens was added): what the logs written before v2 hold, and what a producer
that still signs v1 sends. Each is believed after the change, one at a time (a live consumer,
`Keyring.check`) and as a batch judged at its stored time (`sale replay --verify`,
`Keyring.check_many`)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marketplace.shared import signature_workers, signing
from marketplace.shared.canonical_json import canonical
from schemas.codec import decode
from schemas.events import Event
from tests.samples import every_event

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "signed_v1.json"


def v1_records() -> tuple[signing.Keyring, list[tuple[Event, dict[str, bytes]]]]:
    """The fixture's keyring (each test key may produce anything) and its records, decoded
    as a consumer or the log's replay decodes them."""
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    keyring = signing.Keyring()
    for principal, text in data["public_keys"].items():
        public = signing.public_from_text(text)
        keyring.add(signing.PublicKey(signing.key_id_of(public), principal, "any", public))
    records = [
        (
            decode(r["value"]),
            {
                signing.KEY_ID_HEADER: r["key_id"].encode(),
                signing.SIGNATURE_HEADER: r["signature"].encode(),
            },
        )
        for r in data["records"]
    ]
    return keyring, records


def test_the_fixture_holds_a_task_a_bid_and_a_result_signed_v1() -> None:
    _, records = v1_records()
    assert {"TaskPosted", "BidSubmitted", "TaskResult"} <= {e.type for e, _ in records}


@pytest.mark.parametrize("index", range(len(v1_records()[1])))
def test_a_record_signed_v1_is_believed_by_a_live_consumer(index: int) -> None:
    keyring, records = v1_records()
    event, headers = records[index]
    assert keyring.check(event, headers) is None, event.type


def test_records_signed_v1_are_believed_in_a_batch_as_replay_checks_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many enough for the worker processes (`signature_workers.POOL_FROM`), as a replayed
    log is, each judged at a stored time."""
    keyring, records = v1_records()
    monkeypatch.setattr(signature_workers, "POOL_FROM", len(records))
    at = [datetime(2026, 6, 1, tzinfo=UTC)] * len(records)
    assert asyncio.run(keyring.check_many(records, at)) == [None] * len(records)


def test_a_record_signed_v1_and_changed_since_is_refused() -> None:
    keyring, records = v1_records()
    event, headers = next((e, h) for e, h in records if e.type == "BidSubmitted")
    changed = event.model_copy(update={"price": event.price * 2})
    assert "does not match" in keyring.check(changed, headers)
    forged = {**headers, signing.SIGNATURE_HEADER: base64.b64encode(bytes(64))}
    assert "does not match" in keyring.check(event, forged)


def test_a_signer_signs_v2_the_rfc8785_json_of_the_event_without_nulls() -> None:
    """What the contract says an agent in another language signs: domain v2, then JCS (here
    the reference library) of the event's JSON with its null members left out."""
    signer = signing.Signer("small", Ed25519PrivateKey.generate())
    for event in every_event():
        record = json.loads(event.model_dump_json())
        expected = b"sale-event-v2\x00" + rfc8785.dumps(_without_nulls(record))
        signature = base64.b64decode(signer.headers(event)[signing.SIGNATURE_HEADER])
        signer.public.verify(signature, expected)  # raises if it is not


def _without_nulls(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_a_field_added_with_a_null_default_changes_no_v2_bytes() -> None:
    """An older producer that never heard of `max_tokens` signs the same bytes as the code
    that has it: the signature survives the schema's growth."""
    task = next(e for e in every_event() if e.type == "TaskPosted")
    assert task.max_tokens is None
    older = {k: v for k, v in task.model_dump(mode="json").items() if k != "max_tokens"}
    assert signing.canonical(task) == signing.DOMAIN + canonical(older)
    assert b"max_tokens" not in signing.canonical(task)


def test_an_event_with_no_canonical_json_is_checked_as_v1_and_refused_without_a_traceback() -> None:
    """An integer beyond 2**53 has no RFC 8785 form: a producer's record holding one is judged
    by its v1 signature alone, and a bad one is refused like any other."""
    bid = next(e for e in every_event() if e.type == "BidSubmitted")
    huge = bid.model_copy(update={"plan_tokens": 2**60})
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    keyring = signing.Keyring()
    keyring.add(signing.PublicKey(signing.key_id_of(public), "small", "agent", public))
    headers = {
        signing.KEY_ID_HEADER: signing.key_id_of(public).encode(),
        signing.SIGNATURE_HEADER: base64.b64encode(private.sign(signing.canonical_v1(huge))),
    }
    assert keyring.check(huge, headers) is None
    assert "does not match" in keyring.check(huge.model_copy(update={"plan": "x"}), headers)
    assert asyncio.run(keyring.check_many([(huge, headers)])) == [None]


def test_a_v2_record_costs_one_verification_and_only_a_v1_record_two(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hot path: v1 is tried only when v2 does not match."""
    keyring, records = v1_records()
    event, old_headers = next((e, h) for e, h in records if e.type == "BidSubmitted")
    private = Ed25519PrivateKey.generate()
    signer = signing.Signer("small", private)
    keyring.add(signing.PublicKey(signer.key_id, "small", "agent", signer.public))
    new_headers = signing.header_map(signer.headers(event).items())
    verified: list[int] = []
    verify_each = signature_workers.verify_each
    monkeypatch.setattr(
        signature_workers,
        "verify_each",
        lambda claims, make=None: verified.append(len(claims)) or verify_each(claims, make),
    )
    assert keyring.check(event, new_headers) is None and verified == [1]
    verified.clear()
    assert keyring.check(event, old_headers) is None and verified == [1, 1]
    verified.clear()
    batch = [(event, new_headers), (event, old_headers)]
    assert asyncio.run(keyring.check_many(batch)) == [None, None]
    assert verified == [2, 1]  # both as v2, then the one that did not match as v1


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_the_workers_v2_bytes_from_the_events_json_are_the_consumers(event: Event) -> None:
    """A batch's worker processes make the v2 bytes from each event's JSON (`signed_v2`);
    a single record's are made from the decoded event: the same bytes."""
    assert signing.signed_v2(event.model_dump_json().encode()) == signing.canonical(event)


def test_a_batch_signed_v2_is_believed_in_the_workers_and_a_changed_event_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = every_event()
    private = Ed25519PrivateKey.generate()
    keyring = signing.Keyring()
    items = []
    for event in events:
        signer = signing.Signer(event.producer, private)
        keyring.add(signing.PublicKey(signer.key_id, event.producer, "any", signer.public))
        items.append((event, signing.header_map(signer.headers(event).items())))
    changed = items[0][0].model_copy(update={"producer": "mallory"})
    items.append((changed, items[0][1]))
    monkeypatch.setattr(signature_workers, "POOL_FROM", len(items))
    found = asyncio.run(keyring.check_many(items))
    assert found[:-1] == [None] * len(events)
    assert "does not match" in found[-1]
