"""Bytes on the wire ↔ events. JSON, with the event type as the discriminator."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from schemas.events import AnyEvent, Event

_adapter: TypeAdapter[Event] = TypeAdapter(AnyEvent)


class EventDecodeError(ValueError):
    """A record that is not a valid event. The message names each offending field."""


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode()


def decode(raw: bytes | str) -> Event:
    try:
        return _adapter.validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError(describe(exc)) from None


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
