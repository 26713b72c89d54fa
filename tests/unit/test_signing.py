"""Signatures and keyrings without a broker: what a consumer believes, and bad key settings."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from marketplace.core.auction_state import Roster
from marketplace.shared import signing
from marketplace.shared.bus import Bus
from marketplace.shared.config import BrokerConfig, Config, ConfigError, SecurityConfig
from marketplace.shared.keyfiles import (
    add_public,
    new_key,
    read_keyring,
    remove_public,
    trust_of,
)
from schemas.events import AgentHeartbeat, AuctionClosed, BidSubmitted, CodingInputs, TaskPosted
from tests.samples import every_event


def make(tmp_path: Path, **principals: str) -> signing.Trust:
    key_dir, keyring = tmp_path / "keys", tmp_path / "keys" / "keyring.toml"
    for principal, role in principals.items():
        new_key(principal, role, key_dir, keyring)
    return trust_of(SecurityConfig(keyring=keyring, key_dir=key_dir))


def bid(agent_id: str, producer: str | None = None, price: float = 1.0) -> BidSubmitted:
    return BidSubmitted(
        producer=producer or agent_id,
        task_id="t",
        agent_id=agent_id,
        model="m",
        plan="p",
        plan_tokens=3,
        entropy=0.1,
        price=price,
    )


def headers(trust: signing.Trust, principal: str, event: object) -> dict[str, bytes]:
    return signing.header_map(trust.signer(principal).headers(event).items())


def test_an_event_signed_by_a_key_that_may_produce_it_is_believed(tmp_path: Path) -> None:
    trust = make(tmp_path, a="agent")
    event = bid("a")
    assert trust.check(event, headers(trust, "a", event)) is None


def test_what_a_consumer_refuses_and_why(tmp_path: Path) -> None:
    trust = make(tmp_path, a="agent", b="agent", auctioneer="auctioneer")
    event = bid("a")
    signed = headers(trust, "a", event)
    assert trust.check(event, {}) == "signature: unsigned record"
    assert "does not match" in trust.check(event.model_copy(update={"price": 0.0}), signed)
    stranger = signing.Signer("a", signing.Ed25519PrivateKey.generate())
    assert "unknown key" in trust.check(event, signing.header_map(stranger.headers(event).items()))
    as_b = bid("a", producer="b")  # b signs a bid in a's name
    assert "agent_id: 'a' is not the signing agent 'b'" in trust.check(
        as_b, headers(trust, "b", as_b)
    )
    close = AuctionClosed(producer="a", task_id="t", reason="no_bids")
    assert "may not produce AuctionClosed" in trust.check(close, headers(trust, "a", close))
    close = AuctionClosed(producer="b", task_id="t", reason="no_bids")
    assert "producer" in trust.check(close, headers(trust, "auctioneer", close))


def mixed_batch(trust: signing.Trust) -> list[tuple[object, dict[str, bytes]]]:
    """One record of each verdict: believed, unsigned, tampered with, unknown key, base64
    that is not, and a key that may not produce the event."""
    event = bid("a")
    signed = headers(trust, "a", event)
    stranger = signing.Signer("a", signing.Ed25519PrivateKey.generate())
    close = AuctionClosed(producer="a", task_id="t", reason="no_bids")
    return [
        (event, signed),
        (event, {}),
        (event.model_copy(update={"price": 0.0}), signed),
        (event, signing.header_map(stranger.headers(event).items())),
        (event, {**signed, signing.SIGNATURE_HEADER: b"not base64!"}),
        (close, headers(trust, "a", close)),
    ]


@pytest.mark.parametrize("copies", [1, 60], ids=["in this process", "in worker processes"])
async def test_a_batch_gets_the_verdicts_of_one_check_each_in_order(
    tmp_path: Path, copies: int
) -> None:
    """60 copies of the six records is over `POOL_FROM`: the signatures go to the workers."""
    trust = make(tmp_path, a="agent")
    batch = mixed_batch(trust) * copies
    verdicts = await trust.check_many(batch)
    assert verdicts == [trust.check(event, signed) for event, signed in batch]
    assert verdicts[0] is None and verdicts[1] == "signature: unsigned record"
    assert "does not match" in verdicts[2] and "does not match" in verdicts[4]
    assert "unknown key" in verdicts[3] and "may not produce AuctionClosed" in verdicts[5]


DECIDING = {"AuctionOpened", "BidRequested", "JuryCalled", "RefinementCalled"}
DECIDING |= {"SubmissionRejected", "AuctionClosed", "TaskOutcome"}


@pytest.mark.parametrize("forger", ["agent", "client", "recorder", "monitor"])
def test_no_deciding_event_is_believed_from_a_key_that_may_not_decide(
    tmp_path: Path, forger: str
) -> None:
    """Every decision (the auctioneer's and the verifier's), forged under a key of any other
    role with a self-consistent producer, is refused."""
    trust = make(tmp_path, mallory=forger)
    deciding = [e for e in every_event() if e.type in DECIDING]
    assert {e.type for e in deciding} == DECIDING
    for event in deciding:
        forged = event.model_copy(update={"producer": "mallory"})
        refused = trust.check(forged, headers(trust, "mallory", forged))
        assert refused is not None and f"may not produce {event.type}" in refused


def test_nothing_is_refused_when_signatures_are_not_required(tmp_path: Path) -> None:
    assert signing.Trust().check(bid("a"), {}) is None


def test_rotation_keeps_old_and_new_valid_until_the_old_is_removed(tmp_path: Path) -> None:
    key_dir, keyring = tmp_path / "keys", tmp_path / "keys" / "keyring.toml"
    old = new_key("a", "agent", key_dir, keyring)
    trust = trust_of(SecurityConfig(keyring=keyring, key_dir=key_dir))
    event = bid("a")
    signed_old = headers(trust, "a", event)
    with pytest.raises(ConfigError, match="--rotate"):
        new_key("a", "agent", key_dir, keyring)
    new_key("a", "agent", key_dir, keyring, rotate=True)
    signed_new = headers(trust, "a", event)  # a process started now signs with the new key
    assert signed_new != signed_old
    assert trust.check(event, signed_old) is None
    assert trust.check(event, signed_new) is None  # read again from the file: no restart
    assert remove_public(keyring, old)
    assert [(k.principal, k.removed_at is not None) for k in read_keyring(keyring)] == [
        ("a", True),
        ("a", False),
    ]
    later = trust_of(SecurityConfig(keyring=keyring, key_dir=key_dir))
    assert f"key {old} (a) was removed at" in later.check(event, signed_old)
    assert later.check(event, signed_new) is None


def test_a_removed_key_stops_counting_in_a_running_process_within_a_second(
    tmp_path: Path,
) -> None:
    key_dir, keyring = tmp_path / "keys", tmp_path / "keys" / "keyring.toml"
    key_id = new_key("a", "agent", key_dir, keyring)
    running = trust_of(SecurityConfig(keyring=keyring, key_dir=key_dir))
    event = bid("a")
    signed = headers(running, "a", event)
    assert running.check(event, signed) is None
    removed = remove_public(keyring, key_id)
    assert removed is not None
    deadline = time.monotonic() + running.keyring.refresh_s + 0.5
    while running.check(event, signed) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"key {key_id} (a) was removed at" in (running.check(event, signed) or "")
    # what it signed while valid still stands, judged at the time it was stored
    assert running.keyring.check(event, signed, at=removed - timedelta(microseconds=1)) is None
    assert running.keyring.check(event, signed, at=removed) is not None
    assert remove_public(keyring, key_id) == removed  # removing twice changes nothing
    assert remove_public(keyring, "0" * 16) is None


def test_a_removed_key_cannot_be_registered_again(tmp_path: Path) -> None:
    key_dir, keyring = tmp_path / "keys", tmp_path / "keys" / "keyring.toml"
    key_id = new_key("a", "agent", key_dir, keyring)
    [entry] = read_keyring(keyring)
    remove_public(keyring, key_id)
    with pytest.raises(ConfigError, match="already in"):
        add_public(keyring, "a", "agent", base64.b64encode(entry.raw).decode())


def test_a_keyring_written_before_key_times_still_reads(tmp_path: Path) -> None:
    key_dir, keyring = tmp_path / "keys", tmp_path / "keys" / "keyring.toml"
    new_key("a", "agent", key_dir, keyring)
    text = "\n".join(line for line in keyring.read_text().splitlines() if "_at" not in line)
    keyring.write_text(text + "\n")
    [entry] = read_keyring(keyring)
    assert (entry.added_at, entry.removed_at) == (None, None)
    trust, event = trust_of(SecurityConfig(keyring=keyring, key_dir=key_dir)), bid("a")
    assert trust.check(event, headers(trust, "a", event)) is None


def test_bad_key_settings_fail_at_start_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[security\]\.keyring: not set.*no `sale up`"):
        trust_of(SecurityConfig())  # what a command run with no stack beside it most likely lacks
    with pytest.raises(ConfigError, match=r"\[security\]\.keyring: .*no such file"):
        trust_of(SecurityConfig(keyring=tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text('[[keys]]\nid = "00"\nprincipal = "a"\nrole = "agent"\npublic_key = "AAAA"\n')
    with pytest.raises(ConfigError, match=r"\[security\]\.keyring: .*keys\[0\]"):
        trust_of(SecurityConfig(keyring=bad))
    trust = make(tmp_path, a="agent")
    with pytest.raises(ConfigError, match=r"\[security\]\.key_dir: .*no such directory"):
        trust_of(SecurityConfig(keyring=tmp_path / "keys" / "keyring.toml", key_dir=tmp_path / "x"))
    with pytest.raises(ConfigError, match=r"\[security\]\.key_dir: no private key for 'b'"):
        Bus(BrokerConfig(bootstrap="127.0.0.1:1"), "b", trust=trust)
    assert Bus(BrokerConfig(bootstrap="127.0.0.1:1"), "a", trust=trust).signer is not None


def test_keys_come_from_the_environment_like_the_broker(tmp_path: Path) -> None:
    from marketplace.shared.config import parse_config

    config = parse_config({}, {"SALE_KEYRING": "/k/ring.toml", "SALE_KEY_DIR": "/k"})
    assert config.security.keyring == Path("/k/ring.toml")
    assert config.security.key_dir == Path("/k")
    assert Config().security.require_signatures


def test_the_stack_makes_a_key_for_each_of_its_processes(tmp_path: Path) -> None:
    from marketplace.app.stack import stack_keys
    from marketplace.shared.config import AgentConfig, StackConfig

    agent = AgentConfig(id="S", backend="scripted", model="m", input_price=1, output_price=2)
    config = Config(agents=[agent], stack=StackConfig(services=["auctioneer", "verifier"]))
    before = signing.current()
    try:
        env = stack_keys(config, tmp_path)
        roles = {k.principal: k.role for k in read_keyring(Path(env["SALE_KEYRING"]))}
        assert roles == {
            "auctioneer": "auctioneer",
            "verifier": "verifier",
            "client": "client",
            "S": "agent",
        }
        assert stack_keys(config, tmp_path) == env  # the second start makes none
        assert len(read_keyring(Path(env["SALE_KEYRING"]))) == 4
    finally:
        signing.install(before)


def test_a_heartbeat_dated_ahead_of_the_clock_is_not_admitted() -> None:
    now = datetime.now(UTC)
    roster = Roster(ttl=timedelta(seconds=30))
    beat = AgentHeartbeat(producer="a", agent_id="a", model="m", price=1.0, kinds=["coding"])
    assert roster.admit(beat.model_copy(update={"occurred_at": now}), now)
    gone = beat.model_copy(update={"occurred_at": now + timedelta(days=1), "status": "left"})
    assert not roster.admit(gone, now)
    assert roster.is_live("a", now)
    assert roster.admit(beat.model_copy(update={"occurred_at": now + timedelta(seconds=2)}), now)


def test_the_canonical_bytes_survive_the_codec() -> None:
    from schemas.codec import decode, encode

    event = TaskPosted(
        producer="client",
        task_id=f"t-{uuid.uuid4().hex[:6]}",
        kind="coding",
        prompt='def f(): ...  # ünïcode, "quotes", 0.1 + 0.2',
        inputs=CodingInputs(entry_point="f"),
        budget=0.30000000000000004,
    )
    assert signing.canonical(decode(encode(event))) == signing.canonical(event)


def test_a_public_key_made_elsewhere_is_registered_and_then_believed(tmp_path: Path) -> None:
    """`sale keys add`: an agent that keeps its own private key (a foreign agent) hands over
    only its public key; once added, its events are believed, and bad input names the flag."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    keyring = tmp_path / "keyring.toml"
    private = Ed25519PrivateKey.generate()
    text = signing.public_text(private.public_key())
    key_id = add_public(keyring, "foreign", "agent", text)
    [key] = read_keyring(keyring)
    assert (key.key_id, key.principal, key.role) == (key_id, "foreign", "agent")
    with pytest.raises(ConfigError, match="already in"):
        add_public(keyring, "foreign", "agent", text)
    with pytest.raises(ConfigError, match="--public-key: not a base64 Ed25519"):
        add_public(keyring, "foreign", "agent", "bm90IGEga2V5")
    with pytest.raises(ConfigError, match="--principal"):
        add_public(
            keyring,
            "no spaces",
            "agent",
            signing.public_text(Ed25519PrivateKey.generate().public_key()),
        )


CHILD = """
import asyncio, time
import nacl.signing
from marketplace.shared import signature_workers as workers
key = nacl.signing.SigningKey.generate()
claim = (bytes(key.verify_key), b"m", key.sign(b"m").signature)
n = workers.POOL_FROM
if __name__ == "__main__":
    assert asyncio.run(workers.verify_all([claim] * n)) == [True] * n
    print(*workers._pool._processes, flush=True)
    time.sleep(60)
"""


def test_signature_workers_leave_with_a_service_killed_without_warning(tmp_path: Path) -> None:
    """A kill -9 gives the pool no chance to stop its workers: they notice and exit."""
    script = tmp_path / "service.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in child.stdout.readline().split()]
        assert len(workers) >= 2 and all(_alive(pid) for pid in workers)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
