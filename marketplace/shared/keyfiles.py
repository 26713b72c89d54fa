"""Key files: a private key per principal in a directory, the public keys in one keyring file.

The keyring is TOML, one `[[keys]]` table per key (id, principal, role, public_key, added_at and,
once removed, removed_at), so adding a key is appending a table: `sale keys new` and `sale up`
append, under a file lock. Removing a key stamps its `removed_at` and keeps the entry: running
services stop believing it within a second (`signing.Keyring.refresh_s`), and `sale replay
--verify` still believes what it signed before. A removed key never comes back.
A private key is `<key_dir>/<principal>.key` (PKCS#8 PEM, mode 0600); rotating keeps
the old file beside it as `<principal>.key.<old key id>`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from pydantic import TypeAdapter, ValidationError

from marketplace.shared import signing
from marketplace.shared.config import ConfigError, SecurityConfig
from marketplace.shared.signing import (
    ROLES,
    Keyring,
    PublicKey,
    Signer,
    Trust,
    key_id_of,
    public_from_text,
    public_text,
)
from schemas.events import Id

_ID = TypeAdapter(Id)


def private_path(key_dir: Path, principal: str) -> Path:
    return key_dir / f"{principal}.key"


def read_private(path: Path) -> Ed25519PrivateKey:
    """The key in `path`; a file that holds none fails naming the setting and the file."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"[security].key_dir: {path}: not a readable private key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"[security].key_dir: {path}: not an Ed25519 key")
    return key


def read_keyring(path: Path) -> list[PublicKey]:
    """Every key in the keyring file; anything wrong fails naming the file and the entry."""
    where = f"[security].keyring: {path}"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file (make keys with `sale keys new`)") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    keys = []
    for i, entry in enumerate(data.get("keys", [])):
        try:
            keys.append(_entry(entry))
        except (KeyError, ValueError, TypeError, ValidationError) as exc:
            raise ConfigError(f"{where}: keys[{i}]: {exc}") from None
    return keys


def _entry(entry: Mapping[str, object]) -> PublicKey:
    principal = _ID.validate_python(entry["principal"])
    role = str(entry["role"])
    if role not in (*ROLES, "any"):
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    public = public_from_text(str(entry["public_key"]))
    if (key_id := key_id_of(public)) != entry["id"]:
        raise ValueError(f"id {entry['id']!r} is not the id of its public_key ({key_id})")
    added, removed = _instant(entry, "added_at"), _instant(entry, "removed_at")
    return PublicKey(key_id, principal, role, public, added, removed)


def _instant(entry: Mapping[str, object], name: str) -> datetime | None:
    """An entry's time field: absent (None) or a TOML date-time with its offset."""
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name}: {value!r} is not a date-time with an offset (…Z)")
    return value


def _table(key: PublicKey) -> str:
    """One key as the keyring file writes it."""
    times = "".join(
        f"{name} = {at.astimezone(UTC).isoformat().replace('+00:00', 'Z')}\n"
        for name, at in (("added_at", key.added_at), ("removed_at", key.removed_at))
        if at is not None
    )
    return (
        f'\n[[keys]]\nid = "{key.key_id}"\nprincipal = "{key.principal}"\n'
        f'role = "{key.role}"\npublic_key = "{public_text(key.public)}"\n{times}'
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_public(keyring: Path, key: PublicKey) -> None:
    """Appends `key`, stamped as added now unless it says when."""
    if key.added_at is None:
        key = dataclasses.replace(key, added_at=datetime.now(UTC))
    with _locked(keyring), keyring.open("a") as out:
        out.write(_table(key))


def add_public(keyring: Path, principal: str, role: str, text: str) -> str:
    """Registers a public key made elsewhere (a foreign agent's); returns its id. A key that
    does not parse, or is already in the keyring, fails naming the flag."""
    try:
        public = public_from_text(text)
    except ValueError as exc:
        raise ConfigError(f"--public-key: not a base64 Ed25519 public key ({exc})") from None
    try:
        principal = _ID.validate_python(principal)
    except ValidationError:
        raise ConfigError(
            f"--principal: {principal!r} is not an id (letters, digits, . _ -)"
        ) from None
    key = PublicKey(key_id_of(public), principal, role, public)
    known = read_keyring(keyring) if keyring.exists() else []
    if any(k.key_id == key.key_id for k in known):
        raise ConfigError(
            f"--public-key: key {key.key_id} is already in {keyring} (a removed key stays "
            "there, removed: make a new one)"
        )
    append_public(keyring, key)
    return key.key_id


def remove_public(keyring: Path, key_id: str) -> datetime | None:
    """Revokes one key (the end of a rotation, or a stolen key): stamps its `removed_at` and
    keeps it, so what it signed before stays verifiable. Returns when it was removed (now, or
    the earlier removal), None if the keyring has no such key. The file is replaced whole, so a
    reader sees it before or after, never half-written."""
    with _locked(keyring):
        keys = read_keyring(keyring)
        found = next((k for k in keys if k.key_id == key_id), None)
        if found is None:
            return None
        if found.removed_at is not None:
            return found.removed_at
        removed = dataclasses.replace(found, removed_at=datetime.now(UTC))
        text = "".join(_table(removed if k is found else k) for k in keys)
        fresh = keyring.with_name(keyring.name + ".new")
        fresh.write_text(text)
        os.replace(fresh, keyring)
    return removed.removed_at


def new_key(principal: str, role: str, key_dir: Path, keyring: Path, rotate: bool = False) -> str:
    """Writes a new private key for `principal` and appends its public key; returns its id.

    An existing key of the principal is kept beside it (rotation) only when `rotate` is set:
    the old public key stays in the keyring, valid, until `sale keys remove` drops it."""
    _ID.validate_python(principal)
    path = private_path(key_dir, principal)
    if path.exists():
        if not rotate:
            raise ConfigError(f"{path}: a key of {principal!r} exists (--rotate replaces it)")
        old = key_id_of(read_private(path).public_key())
        path.rename(path.with_name(f"{path.name}.{old}"))
    private = Ed25519PrivateKey.generate()
    key_dir.mkdir(parents=True, exist_ok=True)
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = private.public_key()
    append_public(keyring, PublicKey(key_id_of(public), principal, role, public))
    return key_id_of(public)


def ensure_keys(principals: Mapping[str, str], key_dir: Path, keyring: Path) -> list[str]:
    """Makes a key for each principal (→ role) that has none yet; returns those made."""
    made = [p for p in principals if not private_path(key_dir, p).exists()]
    for principal in made:
        new_key(principal, principals[principal], key_dir, keyring)
    if not keyring.exists():
        keyring.parent.mkdir(parents=True, exist_ok=True)
        keyring.touch()
    return made


def trust_of(security: SecurityConfig) -> Trust:
    """The trust a process runs with under `[security]`; bad key settings fail here, naming
    the field, before anything starts."""
    if security.keyring is None:
        if security.require_signatures:
            raise ConfigError(
                "[security].keyring: not set, and require_signatures is on: no `sale up` "
                "is running for this config to lend its keys (start one with `sale up`), or "
                "make keys with `sale keys new` and set SALE_KEYRING"
            )
        return Trust()
    keyring_path = security.keyring
    keys = read_keyring(keyring_path)
    keyring = Keyring({k.key_id: k for k in keys}, reload=_Rereader(keyring_path))
    key_dir = security.key_dir
    if key_dir is not None and not key_dir.is_dir():
        raise ConfigError(f"[security].key_dir: {key_dir}: no such directory")

    def signer_for(principal: str) -> Signer | None:
        if key_dir is None or not private_path(key_dir, principal).exists():
            return None
        return Signer(principal, read_private(private_path(key_dir, principal)))

    return Trust(keyring, security.require_signatures, signer_for)


class _Rereader:
    """Reads the keyring file again if it changed since the last look (None: it did not); a
    file caught mid-write reads as nothing new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def __call__(self) -> list[PublicKey] | None:
        stamp = self._stamp()
        if stamp == self.seen:
            return None
        try:
            keys = read_keyring(self.path)
        except ConfigError:
            return None  # caught mid-write: look again next time
        self.seen = stamp
        return keys


@contextlib.contextmanager
def run_keys(principals: Mapping[str, str]) -> Iterator[Path]:
    """Keys for a run that stands alone (the load benchmarks): a throwaway keyring for
    `principals` (→ role), installed in this process and named to the processes it starts
    by $SALE_KEYRING and $SALE_KEY_DIR, so everything is signed and checked as deployed."""
    saved = {name: os.environ.get(name) for name in ("SALE_KEYRING", "SALE_KEY_DIR")}
    before = signing.current()
    with tempfile.TemporaryDirectory(prefix="sale-keys-") as folder:
        key_dir = Path(folder)
        keyring = key_dir / "keyring.toml"
        ensure_keys(principals, key_dir, keyring)
        signing.install(trust_of(SecurityConfig(keyring=keyring, key_dir=key_dir)))
        os.environ.update(SALE_KEYRING=str(keyring), SALE_KEY_DIR=str(key_dir))
        try:
            yield key_dir
        finally:
            signing.install(before)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
