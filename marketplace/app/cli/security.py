"""Who may say what: `sale keys` (the signing keys and the keyring) and `sale contract` (the
published event schemas and AsyncAPI document an agent in another language builds on)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from marketplace.app.cli.arguments import Commands
from marketplace.shared.config import Config, ConfigError, load_config
from marketplace.shared.signing import REFRESH_S


def signing_roles() -> tuple[str, ...]:
    from marketplace.shared.signing import ROLES

    return ROLES


def add_keys(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="make, list and retire the signing keys")
    keys.set_defaults(run=run_keys, needs_config=False)
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_commands.add_parser("new", help="a private key file and its public key appended")
    new.add_argument("--principal", required=True, help="auctioneer, verifier, client, an agent id")
    new.add_argument("--role", required=True, choices=signing_roles(), help="what the key may sign")
    new.add_argument("--out", required=True, metavar="DIR", help="where the private key goes")
    new.add_argument("--rotate", action="store_true", help="replace the principal's key")
    add = keys_commands.add_parser(
        "add", help="register someone else's public key (an agent that made its own key)"
    )
    add.add_argument("--principal", required=True, help="whose key: e.g. the agent's id")
    add.add_argument("--role", required=True, choices=signing_roles(), help="what it may sign")
    add.add_argument(
        "--public-key", required=True, metavar="BASE64", help="the raw Ed25519 public key, base64"
    )
    remove = keys_commands.add_parser(
        "remove", help="revoke a key (the end of a rotation, or a stolen key): at once, everywhere"
    )
    remove.add_argument("key_id", metavar="KEY_ID", help="the key's id, as `sale keys list` shows")
    keys_commands.add_parser("list", help="the keys in the keyring")
    for sub in keys_commands.choices.values():
        sub.add_argument("--keyring", metavar="FILE", help="default: [security].keyring")


def run_keys(config: Config | None, args: argparse.Namespace) -> int:
    """`sale keys new|add|remove|list`: the keyring the config names (or --keyring, or
    <out>/keyring.toml), the private key into --out."""
    from marketplace.shared import keyfiles

    keyring = _keyring(args)
    if args.keys_command == "new":
        key_id = keyfiles.new_key(args.principal, args.role, Path(args.out), keyring, args.rotate)
        print(f"key {key_id} of {args.principal} ({args.role}): {Path(args.out)}; in {keyring}")
        return 0
    if args.keys_command == "add":
        key_id = keyfiles.add_public(keyring, args.principal, args.role, args.public_key)
        print(f"key {key_id} of {args.principal} ({args.role}) added to {keyring}")
        return 0
    if args.keys_command == "remove":
        removed = keyfiles.remove_public(keyring, args.key_id)
        if removed is None:
            print(f"sale keys: no key {args.key_id} in {keyring}", file=sys.stderr)
            return 1
        print(
            f"key {args.key_id} removed at {removed.isoformat()} in {keyring}: running services "
            f"refuse what it signs within {REFRESH_S:g} s; the log keeps what it signed before"
        )
        return 0
    for key in keyfiles.read_keyring(keyring):
        removed = f"  removed {key.removed_at.isoformat()}" if key.removed_at else ""
        print(f"{key.key_id}  {key.role:<10} {key.principal}{removed}")
    return 0


def _keyring(args: argparse.Namespace) -> Path:
    """--keyring, else the config's `[security].keyring` (a config that cannot be read is no
    keyring), else <out>/keyring.toml beside the new key (by default .sale/keys beside the
    config, where `sale up` makes it)."""
    if args.keyring:
        return Path(args.keyring)
    try:
        keyring = load_config(args.config_path).security.keyring
    except ConfigError:
        keyring = None
    out = getattr(args, "out", None) or args.config_path.absolute().parent / ".sale" / "keys"
    return keyring or Path(out) / "keyring.toml"


def add_contract(commands: Commands) -> None:
    contract = commands.add_parser(
        "contract", help="write the event schemas and AsyncAPI document (docs/contract/)"
    )
    contract.add_argument(
        "--out", help="where (default: docs/contract/ of the repository the code is in)"
    )
    contract.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 naming the files that differ"
    )
    contract.set_defaults(run=run_contract, needs_config=False)


def run_contract(config: Config | None, args: argparse.Namespace) -> int:
    """`sale contract`: writes the event schemas and the AsyncAPI document into --out, or with
    --check names the files there that differ from what the code generates."""
    from marketplace.shared import contract

    found = contract.drift(Path(args.out) if args.out else contract.default_out())
    if not args.check:
        contract.sync(found)
        written, removed = len(found.differ), len(found.stale)
        print(f"sale contract: {written} written, {removed} removed, in {found.out}")
        return 0
    for name in found.differ:
        state = "differs from" if (found.out / name).is_file() else "is missing, made by"
        print(f"sale contract: {found.out / name} {state} the code", file=sys.stderr)
    for name in found.stale:
        print(f"sale contract: {found.out / name} is no longer made by the code", file=sys.stderr)
    if found:
        print("sale contract: regenerate with `sale contract`", file=sys.stderr)
    return 1 if found else 0
