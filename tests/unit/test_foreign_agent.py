"""The example agent written without this project's code (examples/foreign_agent/): it imports
none of it, and what it builds by hand is what the market's own code reads and believes."""

from __future__ import annotations

import ast
import importlib.util
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest
from aiokafka.partitioner import DefaultPartitioner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marketplace.shared import contract, contract_vectors
from marketplace.shared.bus import inbox_partition
from marketplace.shared.keyfiles import new_key, private_path, read_keyring, read_private
from marketplace.shared.signing import Keyring, PublicKey, Signer, header_map, key_id_of
from schemas.codec import decode, encode
from schemas.events import (
    AuctionClosed,
    AuctionOpened,
    BidRequested,
    BidSubmitted,
    CodingInputs,
    Event,
    JuryCalled,
    LeanClose,
    TaskPosted,
)
from tests.samples import every_event

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "foreign_agent"
PROJECT = ("schemas", "marketplace", "agents", "tests")


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("foreign_agent", EXAMPLE / "agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def foreign() -> ModuleType:
    return load_example()


@pytest.fixture(scope="module")
def me(foreign: ModuleType):
    return foreign.Me("foreign", Ed25519PrivateKey.generate(), price=2.0)


def test_the_example_imports_nothing_of_the_project() -> None:
    files = sorted(EXAMPLE.rglob("*.py"))
    assert files, "no example agent found"
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["(relative)"]
            for name in names:
                assert name.split(".")[0] not in PROJECT, f"{path.name} imports {name}"


def believed(me, event: dict) -> Event:
    """The event as the market reads the record `me` makes of it: decoded, its signature
    checked by an agent-role key against the consumer's own canonical bytes of the decoded
    event, and valid under its schema."""
    key, value, headers = me.record(event)
    parsed = decode(value)
    public = me.private.public_key()
    keyring = Keyring({me.key_id: PublicKey(key_id_of(public), "foreign", "agent", public)})
    assert keyring.check(parsed, header_map(headers)) is None
    assert key == parsed.key.encode()
    schema = contract.event_schema(type(parsed))
    jsonschema.validate(json.loads(value), schema, cls=jsonschema.Draft202012Validator)
    return parsed


def posted(entry_point: str = "add", examples: tuple[str, ...] = ("assert add(1, 2) == 3",)):
    return TaskPosted(
        producer="client",
        task_id="t-1",
        kind="coding",
        prompt="Add two numbers.",
        inputs=CodingInputs(entry_point=entry_point, examples=list(examples)),
    )


def as_json(event: Event) -> dict:
    return json.loads(encode(event))


def request(task_id: str = "t-1", agent_id: str = "foreign") -> BidRequested:
    sample = next(e for e in every_event() if isinstance(e, BidRequested))
    return sample.model_copy(update={"task_id": task_id, "agent_id": agent_id})


def test_every_event_it_sends_is_canonical_signed_and_valid(me, foreign) -> None:
    agent = foreign.Agent(me)
    agent.answer(as_json(posted()))
    [draft] = agent.answer(as_json(request()))
    bid = believed(me, draft)
    assert isinstance(bid, BidSubmitted) and bid.examples_pass is True and bid.failure is None
    assert 0 < bid.usage.cost < 1e-4  # a float Python alone would write unlike the market

    heartbeat = believed(me, me.heartbeat("up"))
    assert heartbeat.price == bid.price == 2.0

    jury = next(e for e in every_event() if isinstance(e, JuryCalled))
    jury = jury.model_copy(update={"task_id": "t-1", "jurors": ["foreign", "small"]})
    [review] = agent.answer(as_json(jury))
    assert [s.bid_id for s in believed(me, review).scores] == [b.bid_id for b in jury.bids]

    closed = AuctionClosed(
        producer="auctioneer",
        task_id="t-1",
        reason="awarded",
        winner_bid_id=bid.bid_id,
        winner_agent_id="foreign",
        winning_plan=bid.plan,
        mechanism="lean",
        lean=LeanClose(estimates=[], value=1.0, why="the only draft"),
    )
    [result] = agent.answer(as_json(closed))
    delivered = believed(me, result)
    assert delivered.output == bid.plan and delivered.bid_id == bid.bid_id


def test_in_a_paper_auction_it_bids_a_plan_and_delivers_code(me, foreign) -> None:
    agent = foreign.Agent(me)
    agent.answer(as_json(posted()))
    opened = AuctionOpened(
        producer="auctioneer",
        task_id="t-1",
        agents=["foreign", "small"],
        bid_deadline=datetime(2026, 1, 1, tzinfo=UTC),
    )
    [plan] = agent.answer(as_json(opened))
    bid = believed(me, plan)
    assert bid.examples_pass is None and bid.round == 0
    closed = AuctionClosed(
        producer="auctioneer",
        task_id="t-1",
        reason="awarded",
        winner_bid_id=bid.bid_id,
        winner_agent_id="foreign",
        winning_plan=bid.plan,
    )
    [result] = agent.answer(as_json(closed))
    assert "return a + b" in believed(me, result).output


def test_a_draft_that_fails_the_examples_says_so_and_why(me, foreign) -> None:
    agent = foreign.Agent(me)
    agent.answer(as_json(posted("mul", ("assert mul(2, 3) == 6",))))
    [draft] = agent.answer(as_json(request()))
    bid = believed(me, draft)
    assert bid.examples_pass is False and "NotImplementedError" in bid.failure


def test_it_answers_nothing_addressed_to_another_agent_or_about_an_unknown_task(
    me, foreign
) -> None:
    agent = foreign.Agent(me)
    agent.answer(as_json(posted()))
    assert agent.answer(as_json(request(agent_id="someone-else"))) == []
    assert agent.answer(as_json(request(task_id=f"t-{uuid.uuid4().hex[:6]}"))) == []


@pytest.mark.parametrize(
    "seconds", [0.0, 1.0, 3e-7, 1.5e-5, 9.99e-5, 1e-4, 0.125, 123456.5, 1e16, 2.5e300]
)
def test_its_numbers_are_the_markets(me, seconds: float) -> None:
    event = me.result({"task_id": "t-1", "winner_bid_id": str(uuid.uuid4())}, "x", seconds)
    assert believed(me, event).duration_s == seconds


def test_its_keyring_entry_is_one_the_market_reads(tmp_path: Path, foreign) -> None:
    key = foreign.load_or_make_key(tmp_path / "foreign.key")
    assert (tmp_path / "foreign.key").stat().st_mode & 0o777 == 0o600
    keyring = tmp_path / "keyring.toml"
    keyring.write_text(foreign.keyring_entry(key, "foreign"))
    [entry] = read_keyring(keyring)
    assert (entry.principal, entry.role) == ("foreign", "agent")
    assert entry.key_id == key_id_of(key.public_key())


def test_with_the_keyring_it_believes_only_what_the_market_signed(tmp_path: Path, foreign) -> None:
    key_dir, keyring_path = tmp_path / "keys", tmp_path / "keys" / "keyring.toml"
    new_key("auctioneer", "auctioneer", key_dir, keyring_path)
    new_key("small", "agent", key_dir, keyring_path)
    keyring = foreign.Keyring(keyring_path)
    opened = AuctionOpened(
        producer="auctioneer",
        task_id="t-1",
        agents=[],
        bid_deadline=datetime(2026, 1, 1, tzinfo=UTC),
    )

    def refusal(signer: str, event: Event, value: bytes | None = None) -> str | None:
        headers = Signer(signer, read_private(private_path(key_dir, signer))).headers(event)
        value = value or encode(event)
        return keyring.refusal(json.loads(value), {k: v.encode() for k, v in headers.items()})

    assert refusal("auctioneer", opened) is None
    forged = encode(opened.model_copy(update={"agents": ["small"]}))
    assert refusal("auctioneer", opened, forged).startswith("bad signature")
    posing = opened.model_copy(update={"producer": "small"})
    assert refusal("small", posing) == "the agent role may not send a AuctionOpened"
    assert keyring.refusal({}, {}).startswith("unknown or missing key id")


def test_it_signs_with_a_generic_rfc8785_library_and_no_json_writer_of_its_own(
    foreign,
) -> None:
    """Issue 26: its canonical JSON was its own (a number format of its own, the schema's
    field order); now it is a JCS library's, so any language can do the same."""
    source = (EXAMPLE / "agent.py").read_text()
    assert "import rfc8785" in source and "rfc8785.dumps(" in source
    assert "def number(" not in source and "def canonical(" not in source


@pytest.mark.parametrize("name", sorted(contract_vectors.events()))
def test_its_signed_bytes_of_each_contract_vector_are_the_vectors(foreign, name: str) -> None:
    """The bytes it signs for each published vector (docs/contract/vectors/) are the vector's
    canonical bytes after the domain tag."""
    vectors = ROOT / "docs" / "contract" / "vectors"
    sent = json.loads((vectors / f"{name}.json").read_text(encoding="utf-8"))
    expected = (vectors / f"{name}.canonical").read_bytes()
    assert foreign.signed_bytes(sent) == b"sale-event-v2\x00" + expected


@dataclass
class Record:
    """A record as aiokafka hands it over: what `handle` reads of it."""

    value: bytes
    headers: list[tuple[str, bytes]]


def test_it_reads_only_what_its_inbox_addresses_to_it(me, foreign) -> None:
    """A neighbour's record on the same partition is skipped by its header, not parsed (here
    it is not even JSON); its own is read; a copy sent again is answered once."""
    agent = foreign.Agent(me)
    task, call = encode(posted()), encode(request())
    assert foreign.handle(agent, None, Record(b"\xff not json", [("sale-to", b"other")])) == []
    assert foreign.handle(agent, None, Record(task, [])) == []  # no address: not its own
    assert foreign.handle(agent, None, Record(task, [("sale-to", b"foreign")])) == []
    assert "t-1" in agent.tasks
    [draft] = foreign.handle(agent, None, Record(call, [("sale-to", b"foreign")]))
    assert draft["type"] == "BidSubmitted"
    assert foreign.handle(agent, None, Record(call, [("sale-to", b"foreign")])) == []


@pytest.mark.parametrize("agent_id", ["foreign", "small", "large", "llm", "agent-0042", "é"])
@pytest.mark.parametrize("partitions", [1, 4, 64, 1000])
def test_its_inbox_partition_is_the_markets(foreign, agent_id: str, partitions: int) -> None:
    assert foreign.inbox_partition(agent_id, partitions) == inbox_partition(agent_id, partitions)


def test_the_inbox_partition_is_where_the_producer_puts_the_key() -> None:
    """The auctioneer sends copies keyed by agent id through the producer's default
    partitioner; an agent reads the partition `inbox_partition` names: they agree."""
    for agent_id in ("foreign", "small", "large", "agent-0042"):
        for count in (1, 4, 64):
            parts = list(range(count))
            chosen = DefaultPartitioner()(agent_id.encode(), parts, parts)
            assert inbox_partition(agent_id, count) == chosen
