"""A SALE agent written without the SALE code: plain aiokafka, `cryptography`, json and a
generic RFC 8785 (JSON Canonicalization Scheme) library, `rfc8785`.

It is what an agent in any language has to do (docs/contract/README.md is the contract):

1. send every event as JSON, and sign it: Ed25519 over b"sale-event-v2\\x00" + the event's
   canonical JSON, RFC 8785 of its JSON object with the null members left out (any language
   has a JCS library); the key id and the signature go in the `sale-key-id` and
   `sale-signature` headers;
2. announce itself with an `AgentHeartbeat` on <prefix>agents, keyed by its agent id, every few
   seconds (the auctioneer forgets an agent it has not heard from in 30 s);
3. read its inbox: the one partition of <prefix>inbox its id hashes to (murmur2 of the id's
   UTF-8 bytes, made positive, modulo the inbox's partition count: Kafka's default
   partitioner), by manual assignment, skipping every record whose `sale-to` header names
   another agent before reading it; the task it is asked to bid on comes there just before
   the call. Answer on <prefix>bids, <prefix>reviews and <prefix>results, keyed by task id:
   - lean auction (the default): `BidRequested` -> a `BidSubmitted` draft (the code, and
     whether it passes the task's visible examples); `AuctionClosed` naming it the winner ->
     a `TaskResult` delivering the winning draft;
   - paper auction: `AuctionOpened` -> a plan `BidSubmitted`; `JuryCalled` -> a
     `ReviewSubmitted` scoring every bid; `AuctionClosed` naming it the winner -> a
     `TaskResult` with the code.
   Delivery is at least once: an event it has answered (by `event_id`) is not answered again.

Its "model" is a table: it writes `add` correctly and a stub for anything else. A draft's
verdict is real: the draft and the task's examples run in a subprocess (not a sandbox: run
only tasks you trust this way).

    # once: make a key and register its public key in the market's keyring (role "agent")
    python examples/foreign_agent/agent.py --key foreign.key --agent-id foreign --keyring-entry \\
        >> .sale/keys/keyring.toml
    python examples/foreign_agent/agent.py --bootstrap HOST:PORT --prefix sale. \\
        --key foreign.key --agent-id foreign [--keyring .sale/keys/keyring.toml]

With --keyring it believes only tasks signed by a client key and decisions signed by the
auctioneer's (roles "client" or "auctioneer", or "any"), as a careful agent should.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

DOMAIN = b"sale-event-v2\x00"
KEY_ID_HEADER = "sale-key-id"
SIGNATURE_HEADER = "sale-signature"
ADDRESSEE_HEADER = "sale-to"
# Who may sign what its inbox holds: tasks a client, the auction's decisions the auctioneer.
TRUSTED_ROLES = {"TaskPosted": ("client", "any")}
DECISION_ROLES = ("auctioneer", "any")
STREAM_OF = {  # where each event it sends goes (docs/contract/asyncapi.json)
    "AgentHeartbeat": "agents",
    "BidSubmitted": "bids",
    "ReviewSubmitted": "reviews",
    "TaskResult": "results",
}

# --- canonical JSON: the bytes that are signed -------------------------------------------------


def signed_bytes(event: dict[str, Any]) -> bytes:
    """What a signature covers: the domain tag, then RFC 8785 of the event without nulls."""
    return DOMAIN + rfc8785.dumps(without_nulls(event))


def without_nulls(value: Any) -> Any:
    """Every null member of every object left out; a null element of a list stays."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def timestamp() -> str:
    """Now, in UTC, as the market writes it: microseconds unless zero, and a Z."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# --- keys and signatures ----------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_or_make_key(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return private
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def keyring_entry(private: Ed25519PrivateKey, agent_id: str) -> str:
    """The table a market operator appends to its keyring to let this agent in."""
    public = private.public_key()
    raw = base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    return (
        f'\n[[keys]]\nid = "{key_id(public)}"\nprincipal = "{agent_id}"\n'
        f'role = "agent"\npublic_key = "{raw}"\n'
    )


class Keyring:
    """The market's public keys (its keyring TOML), to believe only what they signed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys: dict[str, dict[str, Any]] = {}
        self.read()

    def read(self) -> None:
        data = tomllib.loads(self.path.read_text())
        self.keys = {entry["id"]: entry for entry in data.get("keys", [])}

    def refusal(self, event: dict[str, Any], headers: dict[str, bytes]) -> str | None:
        """Why a record holding `event` (parsed) is not to be believed, or None."""
        kid = headers.get(KEY_ID_HEADER, b"").decode()
        if kid not in self.keys:
            self.read()  # a key added since
        entry = self.keys.get(kid)
        if entry is None:
            return f"unknown or missing key id {kid!r}"
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key"]))
        try:
            public.verify(base64.b64decode(headers.get(SIGNATURE_HEADER, b"")), signed_bytes(event))
        except (InvalidSignature, ValueError):
            return f"bad signature for key {kid}"
        if entry["role"] not in TRUSTED_ROLES.get(event.get("type"), DECISION_ROLES):
            return f"the {entry['role']} role may not send a {event.get('type')}"
        if entry["role"] != "any" and event.get("producer") != entry["principal"]:
            return f"producer {event.get('producer')!r} is not the signer {entry['principal']!r}"
        return None


# --- the events it sends: every field, defaults included (a null may be left out) -------------


class Me:
    def __init__(self, agent_id: str, private: Ed25519PrivateKey, price: float) -> None:
        self.agent_id = agent_id
        self.private = private
        self.price = price
        self.model = "foreign-example"
        self.key_id = key_id(private.public_key())

    def envelope(self, type_: str) -> dict[str, Any]:
        return {
            "type": type_,
            "event_id": str(uuid.uuid4()),
            "schema_version": 1,
            "producer": self.agent_id,
            "occurred_at": timestamp(),
        }

    def heartbeat(self, status: str) -> dict[str, Any]:
        return {
            **self.envelope("AgentHeartbeat"),
            "agent_id": self.agent_id,
            "model": self.model,
            "price": float(self.price),
            "input_price": None,
            "kinds": ["coding"],
            "status": status,
        }

    def usage(self, completion_tokens: int, seconds: float) -> dict[str, Any]:
        return {
            "requests": 1,
            "prompt_tokens": 0,
            "completion_tokens": completion_tokens,
            "cached_tokens": 0,
            "cost": self.price * completion_tokens / 1_000_000,
            "seconds": seconds,
        }

    def bid(
        self, task_id: str, text: str, seconds: float, verdict: tuple[bool, str | None] | None
    ) -> dict[str, Any]:
        """A plan bid (paper, `verdict` None) or a draft with its verdict on the examples."""
        tokens = len(text.split())
        return {
            **self.envelope("BidSubmitted"),
            "task_id": task_id,
            "bid_id": str(uuid.uuid4()),
            "agent_id": self.agent_id,
            "model": self.model,
            "round": 0,
            "plan": text,
            "plan_tokens": tokens,
            "entropy": 0.0 if verdict else 1.0,
            "price": float(self.price),  # must be the price of its heartbeat
            "usage": self.usage(tokens, seconds),
            "memory_refs": [],
            "examples_pass": verdict[0] if verdict else None,
            "failure": verdict[1] if verdict else None,
        }

    def review(self, jury: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.envelope("ReviewSubmitted"),
            "task_id": jury["task_id"],
            "juror": self.agent_id,
            "round": jury["round"],
            "scores": [
                {"bid_id": b["bid_id"], "score": 4.0 if b["agent_id"] == self.agent_id else 3.0}
                for b in jury["bids"]
            ],
            "usage": self.usage(0, 0.0),
        }

    def result(self, closed: dict[str, Any], output: str, seconds: float) -> dict[str, Any]:
        usage = self.usage(len(output.split()), seconds)
        return {
            **self.envelope("TaskResult"),
            "task_id": closed["task_id"],
            "agent_id": self.agent_id,
            "bid_id": closed["winner_bid_id"],
            "output": output,
            "usage": usage,
            "cost": usage["cost"],
            "duration_s": seconds,
            "error": None,
            "steps": [],  # a search task's tool steps; this agent takes coding tasks only
        }

    def record(self, event: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Key, value and headers of the record that carries `event`, signed. The value is
        any JSON of the event; the signature covers its canonical form."""
        value = json.dumps(event, ensure_ascii=False).encode()
        signature = base64.b64encode(self.private.sign(signed_bytes(event)))
        key = event.get("task_id") or event["agent_id"]
        headers = [
            ("type", event["type"].encode()),
            (KEY_ID_HEADER, self.key_id.encode()),
            (SIGNATURE_HEADER, signature),
        ]
        return key.encode(), value, headers


# --- what it does -----------------------------------------------------------------------------

SOLUTIONS = {"add": "def add(a, b):\n    return a + b\n"}


def solve(task: dict[str, Any]) -> str:
    entry = task["inputs"]["entry_point"]
    return SOLUTIONS.get(entry, f"def {entry}(*args):\n    raise NotImplementedError\n")


def run_examples(code: str, examples: list[str]) -> tuple[bool, str | None]:
    """Whether `code` passes the task's visible examples, and if not, the error's last line."""
    if not examples:
        return True, None
    program = code + "\n\n" + "\n".join(examples) + "\n"
    try:
        run = subprocess.run(
            [sys.executable, "-I", "-c", program], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return False, "the examples timed out"
    if run.returncode == 0:
        return True, None
    lines = run.stderr.strip().splitlines()
    return False, (lines[-1] if lines else f"exit {run.returncode}")[:4000]


class Agent:
    """Events in, events out: the decisions of the agent, no Kafka here."""

    def __init__(self, me: Me) -> None:
        self.me = me
        self.tasks: dict[str, dict[str, Any]] = {}
        self.answered: set[str] = set()  # event ids: a copy sent again is answered once

    def answer(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("event_id") in self.answered:
            return []
        replies = self.replies(event)
        if replies:
            self.answered.add(event["event_id"])
        return replies

    def replies(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        me = self.me.agent_id
        kind = event.get("type")
        task = self.tasks.get(event.get("task_id", ""))
        if kind == "TaskPosted" and event["kind"] == "coding":
            self.tasks[event["task_id"]] = event
        elif task is None:
            pass  # an auction of a task it cannot do, or has not seen
        elif kind == "BidRequested" and event["agent_id"] == me:
            start = time.monotonic()
            draft = solve(task)
            verdict = run_examples(draft, task["inputs"]["examples"])
            return [self.me.bid(task["task_id"], draft, time.monotonic() - start, verdict)]
        elif kind == "AuctionOpened" and event["mechanism"] == "paper" and me in event["agents"]:
            plan = f"Write {task['inputs']['entry_point']} directly; check it on the examples."
            return [self.me.bid(task["task_id"], plan, 0.0, None)]
        elif kind == "JuryCalled" and me in event["jurors"]:
            return [self.me.review(event)]
        elif kind == "AuctionClosed" and event["winner_agent_id"] == me:
            start = time.monotonic()
            lean = event["mechanism"] == "lean"  # the winning draft is the result
            output = event["winning_plan"] if lean else solve(task)
            return [self.me.result(event, output, time.monotonic() - start)]
        return []


# --- Kafka ------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def inbox_partition(agent_id: str, partitions: int) -> int:
    """The agent's inbox partition: where Kafka's default partitioner puts the key."""
    return (murmur2(agent_id.encode()) & 0x7FFFFFFF) % partitions


async def own_inbox(consumer: AIOKafkaConsumer, topic: str, agent_id: str) -> TopicPartition:
    """Assigns the consumer its inbox partition, by hand: no group to join or rebalance."""
    await consumer.topics()  # the cluster's metadata: the inbox's partition count
    count = len(consumer.partitions_for_topic(topic) or ())
    if count == 0:
        raise RuntimeError(f"no topic {topic}: is the market up?")
    own = TopicPartition(topic, inbox_partition(agent_id, count))
    consumer.assign([own])
    await consumer.position(own)  # from here on it hears every new record
    return own


async def run(args: argparse.Namespace, me: Me) -> None:
    prefix, bootstrap = args.prefix, args.bootstrap
    keyring = Keyring(Path(args.keyring)) if args.keyring else None
    agent = Agent(me)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}agent.{me.agent_id}",  # where its offsets are committed; one process
        auto_offset_reset="latest",  # a new agent joins the next auction, not the history
    )
    await producer.start()
    await consumer.start()
    own = await own_inbox(consumer, prefix + "inbox", me.agent_id)

    async def send(event: dict[str, Any]) -> None:
        key, value, headers = me.record(event)
        topic = prefix + STREAM_OF[event["type"]]
        await producer.send_and_wait(topic, value, key=key, headers=headers)

    async def beat() -> None:
        while True:
            await asyncio.sleep(args.heartbeat_s)
            await send(me.heartbeat("up"))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    beating = None
    try:
        await send(me.heartbeat("up"))  # acknowledged: the auctioneer will count it in
        beating = asyncio.create_task(beat())
        say(f"{me.agent_id}: ready (key {me.key_id}, {own.topic}[{own.partition}])")
        while not stop.is_set():
            for record in (await consumer.getmany(own, timeout_ms=200)).get(own, []):
                for reply in handle(agent, keyring, record):
                    await send(reply)
                    say(f"{me.agent_id}: sent {reply['type']} on {reply.get('task_id')}")
    finally:
        if beating:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        with contextlib.suppress(Exception):
            await send(me.heartbeat("left"))  # the auctioneer stops waiting for it
        await consumer.stop()
        await producer.stop()


def handle(agent: Agent, keyring: Keyring | None, record: Any) -> list[dict]:
    """The replies to one record; nothing for a record addressed to another agent (not even
    parsed), or that is no event, or not believed."""
    headers = dict(record.headers or ())
    if headers.get(ADDRESSEE_HEADER, b"").decode(errors="replace") != agent.me.agent_id:
        return []  # a neighbour's on the same partition
    try:
        event = json.loads(record.value)
        if keyring is not None:
            refused = keyring.refusal(event, headers)
            if refused:
                say(f"{agent.me.agent_id}: ignored a {event.get('type')}: {refused}")
                return []
        return agent.answer(event)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        say(f"{agent.me.agent_id}: ignored a record it cannot read: {exc!r}")
        return []  # the market's own consumers dead-letter what is malformed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="localhost:9092", help="Kafka bootstrap servers")
    parser.add_argument("--prefix", default="sale.", help="the market's topic prefix")
    parser.add_argument("--key", required=True, help="Ed25519 private key, PKCS#8 PEM")
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--price", type=float, default=2.0, help="per million generated tokens")
    parser.add_argument("--heartbeat-s", type=float, default=5.0)
    parser.add_argument("--keyring", help="the market's keyring TOML: believe only what it signs")
    parser.add_argument(
        "--keyring-entry",
        action="store_true",
        help="print the keyring table of --key (made if missing) for the operator, and exit",
    )
    args = parser.parse_args()
    try:
        private = load_or_make_key(Path(args.key))
    except (OSError, ValueError, TypeError) as exc:
        print(f"agent: --key: {exc}", file=sys.stderr)
        return 2
    if args.keyring_entry:
        print(keyring_entry(private, args.agent_id), end="")
        return 0
    asyncio.run(run(args, Me(args.agent_id, private, args.price)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
