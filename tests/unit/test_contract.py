"""The published contract (docs/contract/): generated from the code, and checked in as it is
generated. The first test is the CI check that the checked-in copy is current."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from agents import runtime
from marketplace.app import cli
from marketplace.services import auctioneer, verifier
from marketplace.shared import contract, contract_vectors, signing
from marketplace.shared.signing import DOMAIN, DOMAIN_V1, KEY_ID_HEADER, SIGNATURE_HEADER
from schemas.codec import decode, encode
from schemas.topics import STREAMS
from tests.samples import every_event

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "contract"
REGENERATE = "python -m marketplace.app.cli contract  (the `sale contract` command)"


def test_the_checked_in_contract_is_what_the_code_generates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["contract", "--check", "--out", str(PUBLISHED)])
    named = capsys.readouterr().err
    assert code == 0, (
        f"docs/contract/ is out of date with schemas/ and signing:\n{named}"
        f"Regenerate it from the repository root with\n    {REGENERATE}\nand commit the result."
    )


def test_check_names_each_changed_missing_and_stale_file_and_a_run_repairs_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "contract"
    assert cli.main(["contract", "--out", str(out)]) == 0
    (out / "asyncapi.json").write_text("{}\n")
    (out / "events" / "TaskPosted.json").unlink()
    (out / "events" / "Retired.json").write_text("{}\n")
    capsys.readouterr()

    assert cli.main(["contract", "--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'asyncapi.json'} differs from the code" in err
    assert f"{out / 'events/TaskPosted.json'} is missing" in err
    assert f"{out / 'events/Retired.json'} is no longer made by the code" in err
    assert "regenerate with `sale contract`" in err

    assert cli.main(["contract", "--out", str(out)]) == 0
    assert cli.main(["contract", "--check", "--out", str(out)]) == 0
    assert not (out / "events" / "Retired.json").exists()


def test_generation_is_deterministic_and_ends_as_each_kind_of_file_should() -> None:
    """JSON files end with one newline; canonical bytes are exact, with none."""
    first, second = contract.contract_files(), contract.contract_files()
    assert first == second
    for name, text in first.items():
        if name.endswith(".canonical"):
            assert text.endswith("}") and "\n" not in text, name
        else:
            assert text.endswith("}\n") and not text.endswith("\n\n"), name
    events = {f"events/{m.__name__}.json" for models in STREAMS.values() for m in models}
    assert events | {"asyncapi.json", "vectors/vectors.json"} <= set(first)
    assert {n for n in first if not n.startswith("vectors/")} == events | {"asyncapi.json"}


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_each_schema_accepts_the_record_and_requires_all_but_the_null_defaults(event) -> None:
    schema = contract.event_schema(type(event))
    jsonschema.Draft202012Validator.check_schema(schema)
    record = json.loads(encode(event))
    jsonschema.validate(record, schema, cls=jsonschema.Draft202012Validator)
    fields = type(event).model_fields
    assert schema["required"] == [
        name for name in record if fields[name].is_required() or fields[name].default is not None
    ]
    lean = {k: v for k, v in record.items() if k in schema["required"] or v is not None}
    jsonschema.validate(lean, schema, cls=jsonschema.Draft202012Validator)
    assert schema["x-sale-stream"] in STREAMS and event.type in {
        m.__name__ for m in STREAMS[schema["x-sale-stream"]]
    }


def test_a_null_default_left_out_of_a_record_changes_nothing_that_is_signed() -> None:
    """Why the schemas may leave such a field out: the consumer fills in None, and the
    canonical JSON leaves nulls out, so the signed bytes are the same."""
    task = next(e for e in every_event() if e.type == "TaskPosted" and e.max_tokens is None)
    record = json.loads(encode(task))
    del record["max_tokens"]
    assert signing.canonical(decode(json.dumps(record))) == signing.canonical(task)


@pytest.mark.parametrize("name", sorted(contract_vectors.events()))
def test_the_codes_canonical_bytes_and_signature_of_each_vector_are_the_files(name: str) -> None:
    vectors = PUBLISHED / "vectors"
    index = {v["name"]: v for v in json.loads((vectors / "vectors.json").read_text())["vectors"]}
    sent = decode((vectors / f"{name}.json").read_bytes())  # as a consumer reads the record
    canonical = signing.canonical(sent)
    assert canonical == signing.DOMAIN + (vectors / f"{name}.canonical").read_bytes()
    signer = signing.Signer(sent.producer, contract_vectors.test_key())
    assert signer.headers(sent) == {
        KEY_ID_HEADER: index[name]["key_id"],
        SIGNATURE_HEADER: index[name]["signature"],
    }


def test_check_finds_the_repositorys_contract_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 26: run elsewhere, `sale contract --check` called all the files "missing"."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["contract", "--check"]) == 0, capsys.readouterr().err
    assert not (tmp_path / "docs").exists()


def test_outside_a_repository_it_asks_for_out_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "site-packages" / "marketplace" / "shared" / "contract.py"
    monkeypatch.setattr(contract, "__file__", str(fake))
    assert cli.main(["contract", "--check"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "Traceback" not in err


def test_a_record_missing_a_defaulted_field_is_not_canonical() -> None:
    """The consumer would fill event_id in itself, and its bytes would not be the signed ones."""
    event = every_event()[0]
    schema = contract.event_schema(type(event))
    record = json.loads(encode(event))
    del record["event_id"]
    with pytest.raises(jsonschema.ValidationError, match="'event_id' is a required property"):
        jsonschema.validate(record, schema, cls=jsonschema.Draft202012Validator)


def test_each_stream_says_who_sends_and_who_receives_and_by_which_key() -> None:
    document = contract.asyncapi()
    assert document["asyncapi"] == "3.0.0"
    operations = document["operations"].values()
    for stream in STREAMS:
        on = [o for o in operations if o["channel"]["$ref"] == f"#/channels/{stream}"]
        assert {o["action"] for o in on} == {"send", "receive"}, stream
    assert "agent.send.bids" in document["operations"]
    assert "agent.receive.checks" not in document["operations"]  # agents never read checks
    assert contract.producers("auctions") == ["auctioneer"]
    messages = document["components"]["messages"]
    assert messages["BidSubmitted"]["bindings"]["kafka"]["key"]["description"].endswith("task_id")
    assert messages["AgentHeartbeat"]["bindings"]["kafka"]["key"]["description"].endswith(
        "agent_id"
    )
    headers = document["components"]["schemas"]["SignatureHeaders"]
    assert headers["required"] == [KEY_ID_HEADER, SIGNATURE_HEADER]


def test_the_consumers_it_names_are_what_the_services_read() -> None:
    reads = {
        "agent": set(runtime.STREAMS),
        "auctioneer": {*auctioneer.STREAMS, "agents"},  # the roster is read outside the group
        "verifier": set(verifier.STREAMS),
        "recorder": set(STREAMS),
    }
    for role, streams in reads.items():
        named = {s for s, roles in contract.CONSUMERS.items() if role in roles}
        assert named == streams, role


def test_the_contract_readme_names_the_signing_rules_the_code_uses() -> None:
    readme = (PUBLISHED / "README.md").read_text()
    facts = (KEY_ID_HEADER, SIGNATURE_HEADER, repr(DOMAIN)[2:-1], repr(DOMAIN_V1)[2:-1])
    for fact in (*facts, "RFC 8785", "vectors/", "sale contract"):
        assert fact in readme, fact


def test_every_payload_reference_names_a_generated_schema() -> None:
    files = contract.contract_files()
    for message in contract.asyncapi()["components"]["messages"].values():
        assert message["payload"]["$ref"].removeprefix("./") in files


def test_the_contract_readme_finds_an_inbox_partition_as_the_code_does() -> None:
    """The worked examples of "Your inbox partition" are what `inbox_partition` and murmur2
    give: an agent written from the README reads the partition its copies are sent to."""
    from aiokafka.partitioner import murmur2

    from marketplace.shared.bus import inbox_partition

    readme = (PUBLISHED / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| `0x([0-9a-f]{8})` \| (\d+) \| (\d+) \|$", readme, re.M)
    assert len(rows) >= 3
    for agent_id, hashed, of_4, of_64 in rows:
        assert murmur2(agent_id.encode()) == int(hashed, 16), agent_id
        assert (inbox_partition(agent_id, 4), inbox_partition(agent_id, 64)) == (
            int(of_4),
            int(of_64),
        )
