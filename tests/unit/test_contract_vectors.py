"""The signing contract's test vectors (docs/contract/vectors/), checked as an implementer in
another language would: with a generic RFC 8785 library and an Ed25519 one, and nothing of this
project (this file imports none of it: a test holds it to that)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "contract" / "vectors"
INDEX = json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))
DOMAIN = bytes.fromhex(INDEX["domain_hex"])


def without_nulls(value: object) -> object:
    """Every null member of every object left out; a null element of a list stays."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def test_the_domain_and_the_test_key_are_as_the_readme_says() -> None:
    assert DOMAIN == b"sale-event-v2\x00"
    key = INDEX["key"]
    public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key["seed_hex"])).public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert base64.b64encode(raw).decode() == key["public_key"]
    assert hashlib.sha256(raw).hexdigest()[:16] == key["key_id"]
    assert "TEST ONLY" in key["warning"]


def test_there_is_a_vector_for_each_producing_role_and_every_file_is_listed() -> None:
    names = [v["name"] for v in INDEX["vectors"]]
    assert {n.split("-")[0] for n in names} >= {"client", "agent", "auctioneer", "verifier"}
    listed = {v["event"] for v in INDEX["vectors"]} | {v["canonical"] for v in INDEX["vectors"]}
    assert {p.name for p in VECTORS.iterdir()} == listed | {"vectors.json"}


@pytest.mark.parametrize("vector", INDEX["vectors"], ids=lambda v: v["name"])
def test_each_vector_canonicalises_and_verifies_with_generic_libraries(vector: dict) -> None:
    event = json.loads((VECTORS / vector["event"]).read_text(encoding="utf-8"))
    canonical = (VECTORS / vector["canonical"]).read_bytes()
    assert rfc8785.dumps(without_nulls(event)) == canonical
    assert vector["key_id"] == INDEX["key"]["key_id"]
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(INDEX["key"]["public_key"]))
    public.verify(base64.b64decode(vector["signature"]), DOMAIN + canonical)  # raises if not
