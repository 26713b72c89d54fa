"""Authenticated events: who may say what on the broker.

Anyone who can publish to Kafka could otherwise run the market (bid as another agent, close an
auction, grade a result). So every record is signed by its producer with Ed25519 over the
canonical bytes of its event (RFC 8785 of the decoded event, nulls left out:
`canonical_json`, what a consumer and the log's replay can both recompute, and what any language
has a library for), and the key id and signature travel in record headers.
A consumer holds a keyring of public keys, each with its principal and role, and refuses a
record that is unsigned, signed by an unknown key, mis-signed, of a type the key's role may not
produce, or (for an agent) about another agent. A refused record is dead-lettered with the
reason by the bus and changes nothing.

Signatures are v2 (`DOMAIN`, RFC 8785). A checker also believes v1, the bytes signed before
(`DOMAIN_V1` + the pydantic JSON of the event, `canonical_v1`), so the logs written then stay
verifiable in `sale replay --verify` and a producer that still signs v1 keeps working; v1 is
tried only when v2 does not match, so the common case costs one verification.

Rotation without downtime: a keyring may hold several keys of one principal; all are valid
until removed. Revocation without a restart: a keyring file is looked at again at most
`Keyring.refresh_s` (1 s) after the last look, whenever a record is checked, and at once when a
key id it did not know turns up; a removed key stays in the file with the time of its removal,
so a live consumer refuses whatever it signs from then on, while `sale replay --verify` still
believes what it signed while it was valid (judged by when the log stored each event).

Keys are kept as `cryptography` objects (files, PEM, the keyring's text); signing and checking,
once per record in every consumer, go through libsodium (PyNaCl): the same Ed25519, faster than
OpenSSL's; `Keyring.check_many` verifies a large batch on every core
(`signature_workers`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from marketplace.shared import canonical_json, signature_workers
from schemas.events import Event

log = logging.getLogger(__name__)

KEY_ID_HEADER = "sale-key-id"
SIGNATURE_HEADER = "sale-signature"
REFRESH_S = 1.0  # how long after its last look a keyring looks at its file again (revocation)
DOMAIN = b"sale-event-v2\x00"  # a signature over an event can never pass for anything else
DOMAIN_V1 = b"sale-event-v1\x00"  # before RFC 8785: still believed (`canonical_v1`)
# Fields added to an event after v1 signatures ended: v1 bytes leave them out while they hold
# their default, as the v1 code, which did not know them, wrote the event. A field added to a
# model and not listed here fails tests/unit/test_signature_migration.py (its v1 records).
ADDED_AFTER_V1: dict[str, frozenset[str]] = {"TaskPosted": frozenset({"max_tokens"})}

Role = Literal["auctioneer", "verifier", "client", "recorder", "monitor", "agent", "any"]
ROLES: tuple[str, ...] = ("auctioneer", "verifier", "client", "recorder", "monitor", "agent")
SERVICE_ROLES = ("auctioneer", "verifier", "client", "recorder", "monitor")

# What each role may produce. Any consumer dead-letters what it cannot use, so every role may
# publish a DeadLetter (it only adds a row to the log; it decides nothing).
MAY_PRODUCE: dict[str, frozenset[str]] = {
    "auctioneer": frozenset(
        {
            "AuctionOpened",
            "BidRequested",
            "JuryCalled",
            "RefinementCalled",
            "SubmissionRejected",
            "AuctionClosed",
            "DeadLetter",
        }
    ),
    "verifier": frozenset({"TaskOutcome", "DeadLetter"}),
    "client": frozenset({"TaskPosted", "TaskChecks", "DeadLetter"}),
    "recorder": frozenset({"DeadLetter"}),
    "monitor": frozenset({"DeadLetter"}),
    "agent": frozenset(
        {"BidSubmitted", "ReviewSubmitted", "TaskResult", "AgentHeartbeat", "DeadLetter"}
    ),
}


def key_id_of(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_from_text(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def public_text(public: Ed25519PublicKey) -> str:
    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def canonical(event: Event) -> bytes:
    """The bytes signed (v2): the domain tag, then the event's RFC 8785 JSON without nulls;
    CanonicalizationError for an event that has none (an integer beyond 2**53)."""
    return signed_v2(event.model_dump_json().encode())


def signed_v2(record: bytes) -> bytes:
    """`canonical` of an event from its JSON as pydantic writes it (the same values as
    `model_dump(mode="json")`): what a batch's worker processes make for themselves."""
    return DOMAIN + canonical_json.canonical(json.loads(record))


def canonical_v1(event: Event) -> bytes:
    """The bytes a v1 signature covers: the v1 tag, then the event's pydantic JSON as the v1
    code wrote it (without the fields added since while they hold their default)."""
    fields = type(event).model_fields
    added = {
        name
        for name in ADDED_AFTER_V1.get(event.type, ())
        if getattr(event, name) == fields[name].get_default(call_default_factory=True)
    }
    return DOMAIN_V1 + event.model_dump_json(exclude=added or None).encode()


@dataclass(frozen=True)
class Signer:
    """One principal's private key: what a producing process holds."""

    principal: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @cached_property
    def key_id(self) -> str:
        return key_id_of(self.public)

    @cached_property
    def _sodium(self) -> nacl.signing.SigningKey:
        seed = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return nacl.signing.SigningKey(seed)

    def headers(self, event: Event) -> dict[str, str]:
        """v2 (`canonical`); v1 for an event JCS cannot write (an integer beyond 2**53), which a
        checker judges by v1 alone (`_v2_or_none`), so such an event still reaches a consumer
        that refuses it with its reason instead of failing its producer."""
        signed = _v2_or_none(event) or canonical_v1(event)
        signature = self._sodium.sign(signed).signature
        return {KEY_ID_HEADER: self.key_id, SIGNATURE_HEADER: base64.b64encode(signature).decode()}


@dataclass(frozen=True)
class PublicKey:
    """One keyring entry: whose key it is, what that principal may produce, and when it was
    valid (from `added_at`, until `removed_at`; None: no bound recorded)."""

    key_id: str
    principal: str
    role: str
    public: Ed25519PublicKey
    added_at: datetime | None = None
    removed_at: datetime | None = None

    @cached_property
    def raw(self) -> bytes:
        return self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def invalid_at(self, at: datetime) -> str | None:
        """Why this key vouches for nothing signed at `at`, or None when it was valid then."""
        if self.removed_at is not None and at >= self.removed_at:
            return (
                f"signature: key {self.key_id} ({self.principal}) was removed at "
                f"{self.removed_at.isoformat()}"
            )
        if self.added_at is not None and at < self.added_at:
            return (
                f"signature: key {self.key_id} ({self.principal}) was only added at "
                f"{self.added_at.isoformat()}"
            )
        return None


def permitted(key: PublicKey, event: Event) -> str | None:
    """Why `key` may not produce `event`, or None when it may."""
    if key.role == "any":
        return None
    if event.type not in MAY_PRODUCE.get(key.role, frozenset()):
        return f"signature: a {key.role} key ({key.principal}) may not produce {event.type}"
    if event.producer != key.principal:
        return f"producer: {event.producer!r} is not the signer {key.principal!r}"
    if key.role == "agent":
        who = getattr(event, "agent_id", None) or getattr(event, "juror", None)
        if who is not None and who != key.principal:
            return f"agent_id: {who!r} is not the signing agent {key.principal!r}"
    return None


@dataclass
class Keyring:
    """The public keys a consumer trusts, by key id. `reload` (when set) reads the keyring's
    source again (it returns None when the source has not changed since, so a look costs a file
    check, not a parse): when an unknown key id turns up, and otherwise at most `refresh_s`
    after the last look, so a key removed from the source stops counting within that time.
    Keys that came from the source and left it are dropped; keys `add`ed in memory stay."""

    keys: dict[str, PublicKey] = field(default_factory=dict)
    reload: Callable[[], Iterable[PublicKey] | None] | None = None
    refresh_s: float = REFRESH_S
    _from_source: set[str] = field(default_factory=set)
    _looked: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.reload is not None:
            self._from_source = set(self.keys)

    def add(self, key: PublicKey) -> None:
        self.keys[key.key_id] = key

    def get(self, key_id: str) -> PublicKey | None:
        due = time.monotonic() - self._looked >= self.refresh_s
        if self.reload is not None and (due or key_id not in self.keys):
            self._look_again()
        return self.keys.get(key_id)

    def _look_again(self) -> None:
        with self._lock:
            self._looked = time.monotonic()
            if (fresh := self.reload()) is None:  # type: ignore[misc]
                return
            source = {k.key_id: k for k in fresh}
            kept = {i: k for i, k in self.keys.items() if i not in self._from_source}
            self.keys = kept | source
            self._from_source = set(source)

    def check(
        self, event: Event, headers: Mapping[str, bytes], at: datetime | None = None
    ) -> str | None:
        """Why the record holding `event` is not to be believed, or None when it is; the key
        must be valid `at` (default: now, as a live consumer judges)."""
        claim = self._claim(event, headers, at)
        if isinstance(claim, str):
            return claim
        key, signature = claim
        verified = _verifies(key, _v2_or_none(event), signature) or _verifies(
            key,
            canonical_v1(event),
            signature,  # signed before v2?
        )
        return permitted(key, event) if verified else _mismatch(key)

    async def check_many(
        self,
        items: Sequence[tuple[Event, Mapping[str, bytes]]],
        times: Sequence[datetime] | None = None,
    ) -> list[str | None]:
        """`check` of each item, in order (each judged at its time in `times`, default now);
        a large batch's signatures are verified, and their canonical bytes made, in worker
        processes (`signature_workers`), on every core, while the event loop runs on."""
        ats = times if times is not None else [None] * len(items)
        claims = [
            self._claim(event, headers, at) for (event, headers), at in zip(items, ats, strict=True)
        ]
        pending = [(i, claim) for i, claim in enumerate(claims) if not isinstance(claim, str)]
        verified = await _verified([items[i][0] for i, _ in pending], [c for _, c in pending])
        found: list[str | None] = [c if isinstance(c, str) else None for c in claims]
        for (i, (key, _)), ok in zip(pending, verified, strict=True):
            found[i] = permitted(key, items[i][0]) if ok else _mismatch(key)
        return found

    def _claim(
        self, event: Event, headers: Mapping[str, bytes], at: datetime | None
    ) -> str | tuple[PublicKey, bytes]:
        """What a record claims (the key it names and the signature), or why it claims
        nothing checkable."""
        key_id = headers.get(KEY_ID_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not key_id or not signature:
            return "signature: unsigned record"
        key = self.get(key_id.decode(errors="replace"))
        if key is None:
            return f"signature: unknown key {key_id.decode(errors='replace')!r}"
        if (expired := key.invalid_at(at or datetime.now(UTC))) is not None:
            return expired
        try:
            return key, base64.b64decode(signature, validate=True)
        except ValueError:
            return _mismatch(key)


def _v2_or_none(event: Event) -> bytes | None:
    """`canonical(event)`, or None when the event has no canonical JSON (only v1 could have
    signed it)."""
    try:
        return canonical(event)
    except canonical_json.CanonicalizationError:
        return None


def _verifies(key: PublicKey, message: bytes | None, signature: bytes) -> bool:
    return message is not None and signature_workers.verify_each(
        [(key.raw, message, signature)]
    ) == [True]


async def _verified(
    events: Sequence[Event], claims: Sequence[tuple[PublicKey, bytes]]
) -> list[bool]:
    """Whether each claim's signature is over its event's v2 bytes, or failing that its v1
    bytes. A batch large enough for the worker processes has its v2 bytes made there too
    (`signed_v2` of each event's pydantic JSON, which costs little to write here): making
    them costs about as much as verifying them."""
    if len(claims) >= signature_workers.POOL_FROM:
        v2 = [
            (k.raw, e.model_dump_json().encode(), s)
            for e, (k, s) in zip(events, claims, strict=True)
        ]
        verdicts = await signature_workers.verify_all(v2, signed_v2)
    else:
        messages = [_v2_or_none(event) for event in events]
        ready = [i for i, message in enumerate(messages) if message is not None]
        found = await signature_workers.verify_all(
            [(claims[i][0].raw, messages[i], claims[i][1]) for i in ready]
        )
        verdicts = [False] * len(claims)
        for i, ok in zip(ready, found, strict=True):
            verdicts[i] = ok
    older = [i for i, ok in enumerate(verdicts) if not ok]  # signed before v2?
    found = await signature_workers.verify_all(
        [(claims[i][0].raw, canonical_v1(events[i]), claims[i][1]) for i in older]
    )
    for i, ok in zip(older, found, strict=True):
        verdicts[i] = ok
    return verdicts


def _mismatch(key: PublicKey) -> str:
    return f"signature: does not match the event for key {key.key_id} ({key.principal})"


@dataclass
class Trust:
    """What one process holds: the keyring it checks with, whether records must be signed, and
    how it finds the private key of a producer (`signer_for`, None: it holds none)."""

    keyring: Keyring = field(default_factory=Keyring)
    require: bool = False
    signer_for: Callable[[str], Signer | None] = lambda principal: None

    def signer(self, principal: str) -> Signer | None:
        return self.signer_for(principal)

    def check(self, event: Event, headers: Mapping[str, bytes]) -> str | None:
        """The reason to refuse a received event, or None; nothing is refused when signatures
        are not required."""
        return self.keyring.check(event, headers) if self.require else None

    async def check_many(
        self, items: Sequence[tuple[Event, Mapping[str, bytes]]]
    ) -> list[str | None]:
        """`check` of each item, in order (`Keyring.check_many`)."""
        if not self.require:
            return [None] * len(items)
        return await self.keyring.check_many(items)


_current = Trust()


def install(trust: Trust) -> None:
    """Makes `trust` the one every Bus of this process uses unless given another."""
    global _current
    _current = trust


def current() -> Trust:
    return _current


def header_map(headers: Iterable[tuple[str, bytes | str]] | None) -> dict[str, bytes]:
    """Kafka record headers (a list of pairs) as a mapping, values as bytes."""
    return {k: v.encode() if isinstance(v, str) else v for k, v in headers or ()}
