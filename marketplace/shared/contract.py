"""The published contract: a JSON Schema per event and an AsyncAPI document of the streams.

These are what an agent written in another language, without this code, needs to take part:
which events travel on which topic, under which key, who produces and who reads them, and how
each is signed. They are generated from the models (`schemas`) and the signing rules
(`signing`), never written by hand, so they cannot drift from what the services accept; a unit
test fails when the checked-in copy in docs/contract/ differs (`sale contract` rewrites it).

Each schema describes a record: `required` lists every field a producer must send, all but
those whose default is null (a field left out is filled with its default by the consumer, whose
canonical JSON, and so the signature, would then differ from what was signed, unless that
default is null: nulls are left out of the canonical JSON). The test vectors
(`contract_vectors`) go with them. Pure, values in and texts out, but for the end: `drift`
compares a folder with the generated files and `sync` brings it level (what `sale contract`
and `sale contract --check` do).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace.shared.contract_vectors import vector_files
from marketplace.shared.errors import UserError
from marketplace.shared.signing import (
    DOMAIN,
    DOMAIN_V1,
    KEY_ID_HEADER,
    MAY_PRODUCE,
    SIGNATURE_HEADER,
)
from schemas.events import SCHEMA_VERSION, AgentEvent, Event, TaskEvent
from schemas.topics import ADDRESSEE_HEADER, INBOX, INBOX_CARRIES, STREAMS

# Every channel: the streams of record, and the inbox of the copies addressed to one agent.
CHANNELS: dict[str, tuple[type[Event], ...]] = {**STREAMS, INBOX: INBOX_CARRIES}

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING = "0.5.0"
DEFAULT_PREFIX = "sale."

# Who reads each stream (what the services and the agent runtime subscribe to; a unit test holds
# this to their code). The monitor, a debugging tail of every stream, is left out.
CONSUMERS: dict[str, tuple[str, ...]] = {
    "tasks": ("auctioneer", "verifier", "recorder"),
    "checks": ("verifier", "recorder"),
    "bids": ("auctioneer", "recorder"),
    "reviews": ("auctioneer", "recorder"),
    "auctions": ("auctioneer", "verifier", "recorder"),
    "results": ("verifier", "recorder"),
    "outcomes": ("verifier", "recorder"),
    "agents": ("auctioneer", "recorder"),
    "dlq": ("recorder",),
    INBOX: ("agent",),
}

# What each stream is for, in a line: the channel descriptions of the AsyncAPI document.
PURPOSE: dict[str, str] = {
    "tasks": "Tasks posted for auction, as agents may see them.",
    "checks": "The hidden half of each task (tests or gold answers). Agents never read it.",
    "bids": "Plans (paper) or drafts with their visible-example verdict (lean).",
    "reviews": "Jury scores of the bids (paper).",
    "auctions": "The auctioneer's decisions: openings, calls for drafts, juries, refinements, "
    "rejections and closes.",
    "results": "The winning agent's answer to its task.",
    "outcomes": "The verifier's grade of each task's awarded result against the hidden checks.",
    "agents": "Heartbeats: who is live, at which price, for which kinds of task.",
    "dlq": "Records a consumer could not use or did not believe, with the reason.",
    INBOX: "Copies, same value and signature headers, of the events that ask something of one "
    "agent: the task it is asked to bid on, then its calls, juries, refinements and awards. "
    f"Each record names its agent in the `{ADDRESSEE_HEADER}` header; an agent reads the one "
    "partition its id hashes to (murmur2, as Kafka's default partitioner) and skips the "
    "records of the other agents there by that header (docs/contract/README.md).",
}


def key_of(model: type[Event]) -> str:
    """The field (or recipe) whose value is the record key of `model`'s events."""
    if issubclass(model, TaskEvent):
        return "task_id"
    if issubclass(model, AgentEvent):
        return "agent_id"
    return "source_topic:partition"  # a dead letter: where the refused record was


def stream_of(model: type[Event]) -> str:
    return next(stream for stream, models in STREAMS.items() if model in models)


def producers(stream: str) -> list[str]:
    """The roles whose keys may sign an event of `stream` (`signing.MAY_PRODUCE`); the inbox's
    copies are sent by the auctioneer, each signed by its event's producer."""
    if stream == INBOX:
        return ["auctioneer"]
    types = {model.model_fields["type"].default for model in STREAMS[stream]}
    return [role for role, may in MAY_PRODUCE.items() if types & may]


def event_models() -> Iterator[type[Event]]:
    for models in STREAMS.values():
        yield from models


def event_schema(model: type[Event]) -> dict[str, Any]:
    """The JSON Schema of one event's record, with its stream, key and producers."""
    schema = model.model_json_schema(mode="serialization")
    _require_what_is_signed(schema)
    stream = stream_of(model)
    return {
        "$schema": JSON_SCHEMA,
        "$comment": "A record: send every field `required` lists, in any order; a field whose "
        "default is null may be left out; the signature covers the RFC 8785 JSON without nulls "
        "(docs/contract/README.md). Generated by `sale contract`: do not edit.",
        **schema,
        "x-sale-stream": stream,
        "x-sale-key": key_of(model),
        "x-sale-producers": producers(stream),
        "x-sale-schema-version": SCHEMA_VERSION,
    }


def _require_what_is_signed(node: Any) -> None:
    """Makes `required`, in each object schema within, every property but those whose default
    is null: a consumer fills in any other default, and the canonical JSON then holds it."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            node["required"] = [
                name
                for name, spec in node["properties"].items()
                if not (isinstance(spec, dict) and "default" in spec and spec["default"] is None)
            ]
        for value in node.values():
            _require_what_is_signed(value)
    elif isinstance(node, list):
        for value in node:
            _require_what_is_signed(value)


# --- the AsyncAPI document ----------------------------------------------------------------------


def _headers() -> dict[str, Any]:
    domain = DOMAIN.decode().replace("\x00", "\\x00")
    domain_v1 = DOMAIN_V1.decode().replace("\x00", "\\x00")
    return {
        "type": "object",
        "required": [KEY_ID_HEADER, SIGNATURE_HEADER],
        "properties": {
            KEY_ID_HEADER: {
                "type": "string",
                "pattern": "^[0-9a-f]{16}$",
                "description": "The signing key's id: the first 16 hex digits of the SHA-256 of "
                "its raw 32-byte Ed25519 public key.",
            },
            SIGNATURE_HEADER: {
                "type": "string",
                "contentEncoding": "base64",
                "description": f"Base64 (standard alphabet, padded) of the Ed25519 signature of "
                f"the bytes '{domain}' followed by the canonical JSON of the event: RFC 8785 "
                f"(JCS) of the record's JSON object with every null member left out, at any "
                f"depth. Signatures of the bytes '{domain_v1}' followed by the event's JSON as "
                f"the code before RFC 8785 wrote it are still accepted (docs/contract/README.md).",
            },
            "type": {
                "type": "string",
                "description": "The event's type, for tools that route without parsing; "
                "optional, not signed: consumers read the type from the value.",
            },
            ADDRESSEE_HEADER: {
                "type": "string",
                "description": "On the inbox only: the agent id the copy is addressed to, "
                "read before anything else; a record naming another agent is skipped unread. "
                "Not signed: it routes, it vouches for nothing.",
            },
        },
    }


def _message(model: type[Event]) -> dict[str, Any]:
    name = model.__name__
    key = key_of(model)
    message = {
        "name": name,
        "title": name,
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/SignatureHeaders"},
        "payload": {"$ref": f"./events/{name}.json"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"the event's {key}"},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    if model.__doc__:  # its first paragraph (the schema has the whole docstring)
        message["summary"] = " ".join(model.__doc__.strip().split("\n\n")[0].split())
    return message


def _channel(stream: str) -> dict[str, Any]:
    keys = ["agent_id"] if stream == INBOX else sorted({key_of(m) for m in STREAMS[stream]})
    return {
        "address": "{prefix}" + stream,
        "title": stream,
        "description": f"{PURPOSE[stream]} Keyed by {', '.join(keys)}.",
        "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
        "messages": {
            m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in CHANNELS[stream]
        },
    }


def _operations() -> dict[str, Any]:
    """One operation per role and stream: `send` for who may produce there, `receive` for who
    reads it. The document describes the whole market; each operation's tag is its role."""
    operations = {}
    for stream, models in CHANNELS.items():
        for action, roles in (("send", producers(stream)), ("receive", CONSUMERS[stream])):
            for role in roles:
                sent = [
                    m
                    for m in models
                    if action == "receive"
                    or stream == INBOX
                    or m.model_fields["type"].default in MAY_PRODUCE[role]
                ]
                operations[f"{role}.{action}.{stream}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{stream}"},
                    "summary": f"The {role} {action}s on {stream}.",
                    "tags": [{"name": role}],
                    "messages": [
                        {"$ref": f"#/channels/{stream}/messages/{m.__name__}"} for m in sent
                    ],
                }
    return operations


DESCRIPTION = """\
SALE: LLM agents bid for tasks in auctions. Every stream is a Kafka topic named <prefix><stream>;
the streams of record have the same partition count, and task-scoped streams are keyed by
task_id, so one auctioneer owns a task's whole auction. An agent reads only the inbox: copies of
what is addressed to it, keyed by its agent_id, marked with it in the sale-to header. Values
are JSON events (one JSON Schema per event type in ./events/); every event carries the envelope
type, event_id, schema_version, producer, occurred_at. Every record is signed: see the
SignatureHeaders schema and docs/contract/README.md. Delivery is at least once; consumers are
idempotent by event_id. Operations are named <role>.<send|receive>.<stream>: the document
describes the whole market, each role's part tagged.
"""


def asyncapi() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "SALE marketplace events",
            "version": str(SCHEMA_VERSION),
            "description": DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "channels": {stream: _channel(stream) for stream in CHANNELS},
        "operations": _operations(),
        "components": {
            "parameters": {
                "prefix": {
                    "default": DEFAULT_PREFIX,
                    "description": "The deployment's topic prefix ([broker].topic_prefix).",
                }
            },
            "schemas": {"SignatureHeaders": _headers()},
            "messages": {m.__name__: _message(m) for m in event_models()},
        },
    }


def render(document: dict[str, Any]) -> str:
    """The document as its file holds it: sorted keys, two-space indent, one final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def contract_files() -> dict[str, str]:
    """Every generated file of docs/contract/, by path relative to it, with its text."""
    files = {f"events/{m.__name__}.json": render(event_schema(m)) for m in event_models()}
    files["asyncapi.json"] = render(asyncapi())
    files.update(vector_files())
    return dict(sorted(files.items()))


# --- the published copy: how a folder differs from the code, and bringing it level -------------


@dataclass(frozen=True)
class Drift:
    """How the contract files in `out` differ from what the code generates (`contract_files`):
    `differ` are missing or hold other text, `stale` are schemas the code no longer makes."""

    out: Path
    files: dict[str, str]
    differ: list[str]
    stale: list[str]

    def __bool__(self) -> bool:
        return bool(self.differ or self.stale)


GENERATED = ("events/*.json", "vectors/*")  # what a stale file may be: never the README


def default_out() -> Path:
    """docs/contract/ of the repository this code lives in, wherever the command is run from;
    UserError when the code is installed outside a repository."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "docs" / "contract").is_dir():
        raise UserError(
            f"the code is not in a repository ({root} has no docs/contract): "
            "say where to write the contract with --out DIR"
        )
    return root / "docs" / "contract"


def drift(out: Path) -> Drift:
    """Reads `out` (docs/contract/) against the generated files; writes nothing."""
    files = contract_files()
    found = {str(path.relative_to(out)) for pattern in GENERATED for path in out.glob(pattern)}
    stale = sorted(name for name in found if name not in files)
    differ = [
        name
        for name, text in files.items()
        if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text
    ]
    return Drift(out, files, differ, stale)


def sync(found: Drift) -> None:
    """Writes the files that differ and removes the stale ones: `out` then holds the contract."""
    for name in found.differ:
        (found.out / name).parent.mkdir(parents=True, exist_ok=True)
        (found.out / name).write_text(found.files[name], encoding="utf-8")
    for name in found.stale:
        (found.out / name).unlink()
