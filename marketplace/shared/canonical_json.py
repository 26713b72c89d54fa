"""The canonical JSON of an event: the bytes a v2 signature covers (docs/contract/README.md).

RFC 8785, the JSON Canonicalization Scheme (JCS), of the event's JSON object with its null
members left out, in every object at any depth (a null element of a list stays). A standard
form, so that an agent in any language signs with a JCS library of its own and no code of
ours; nulls left out, so that an optional field added later (default None) changes nothing
for the events that do not use it, and a producer need not know of it.

Computed from the event as decoded (`model_dump(mode="json")`), never from the bytes received,
so a consumer and `sale replay --verify`, which has only what the log stored, get the same
bytes. `rfc8785` (Trail of Bits) is the reference; the common case, a tree of ASCII keys,
safe integers and floats Python and ECMAScript write alike, is written by the standard
library's C encoder instead, several times faster, and a test holds the two to the same bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

from schemas.events import Event

CanonicalizationError = rfc8785.CanonicalizationError
SAFE_INTEGER = 2**53 - 1  # JSON numbers are IEEE doubles: integers above this are not exact
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)
_NUMBER = re.compile(r'"\\u0000(\d+)\\u0000"')  # a placeholder, as json.dumps writes it


class _Unusual(Exception):
    """A value the standard library's encoder would not write as JCS does."""


def of_event(event: Event) -> bytes:
    """The canonical bytes of `event`; CanonicalizationError if it has no JCS form (an integer
    beyond ±(2**53 - 1), a lone surrogate in a string)."""
    return canonical(event.model_dump(mode="json"))


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (dicts, lists, str, int, float, bool, None) with its
    null members left out."""
    numbers: list[float] = []
    try:
        text = _ENCODER.encode(_plain(value, numbers))
        if numbers:
            text = _NUMBER.sub(lambda m: rfc8785.dumps(numbers[int(m[1])]).decode(), text)
        return text.encode()
    except (_Unusual, UnicodeEncodeError, ValueError):
        return rfc8785.dumps(without_nulls(value))


def without_nulls(value: Any) -> Any:
    """`value` with every null member of every object left out; lists keep their nulls."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def _plain(value: Any, numbers: list[float]) -> Any:
    """`without_nulls(value)` made ready for `json.dumps` to write as JCS: a whole float as an
    integer (JCS writes 2.0 as 2), a float Python would write unlike ECMAScript (with an
    exponent) as a placeholder for its JCS text, appended to `numbers`; _Unusual for what
    `rfc8785` must write (an unsafe integer, a key whose order may differ under UTF-16, a
    string that could pass for a placeholder). Exact types first: this runs on every record."""
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise _Unusual
        return value
    if kind is dict:
        out = {}
        for k, v in value.items():
            if v is None:
                continue
            if not k.isascii() or "\x00" in k:
                raise _Unusual
            out[k] = _plain(v, numbers)
        return out
    if kind is list:
        return [_plain(v, numbers) for v in value]
    if kind is float:
        if value.is_integer() and -SAFE_INTEGER <= value <= SAFE_INTEGER:
            return int(value)
        if 1e-4 <= abs(value) < 1e16 and not value.is_integer():
            return value  # Python's repr is plain decimal here, the digits ECMAScript's
        numbers.append(value)
        return f"\x00{len(numbers) - 1}\x00"
    if kind is int:
        if -SAFE_INTEGER <= value <= SAFE_INTEGER:
            return value
        raise _Unusual
    if kind is bool or value is None:
        return value
    raise _Unusual  # a subclass or another type: the reference decides
