"""Bytes on the wire ↔ events. JSON, with the event type as the discriminator.

Both directions take the record cap (`broker.max_record_bytes`): an event over it is refused
before it is sent, and a record over it is refused before it is parsed, so neither a producer's
mistake nor a hostile record of any size reaches a handler or Postgres.
"""

from __future__ import annotations

import json

from pydantic import TypeAdapter, ValidationError

from schemas.events import AnyEvent, Event

_adapter: TypeAdapter[Event] = TypeAdapter(AnyEvent)


class EventDecodeError(ValueError):
    """A record that is not a valid event. The message names each offending field."""


class RecordTooLarge(ValueError):
    """An event whose record would be over the cap. The message names its largest field."""


def encode(event: Event, max_bytes: int | None = None) -> bytes:
    """The event's record; RecordTooLarge if it is over `max_bytes`."""
    raw = event.model_dump_json().encode()
    if max_bytes is not None and len(raw) > max_bytes:
        field, size = _largest_field(event)
        raise RecordTooLarge(
            f"{event.type}: {len(raw):,} bytes, over the record cap of {max_bytes:,} bytes "
            f"(broker.max_record_bytes); the largest field is {field} ({size:,} bytes)"
        )
    return raw


def decode(raw: bytes | str, max_bytes: int | None = None) -> Event:
    """The event in a record; EventDecodeError if it is over `max_bytes` (read no further)
    or not a valid event."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise EventDecodeError(
            f"(record): {len(raw):,} bytes, over the record cap of {max_bytes:,} bytes"
        )
    try:
        return _adapter.validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError(describe(exc)) from None


def _largest_field(event: Event) -> tuple[str, int]:
    """The field with the most bytes in the record, followed into nested objects (a list is
    named whole), and how many bytes it holds."""
    path, value = "", event.model_dump(mode="json")
    while isinstance(value, dict) and value:
        sizes = {name: _size(member) for name, member in value.items()}
        name = max(sizes, key=sizes.__getitem__)
        path, value = f"{path}.{name}".lstrip("."), value[name]
    return path, _size(value)


def _size(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def describe(exc: ValidationError) -> str:
    """`field.path[i]: message` per error, joined: names every offending field in one line."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        if err["type"] == "union_tag_invalid":
            lines.append(f"type: unknown event type {err['ctx']['tag']!r}")
            continue
        if err["type"] == "union_tag_not_found":
            lines.append("type: field required")
            continue
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        where = where.lstrip(".") or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)
