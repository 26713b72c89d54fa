"""The canonical JSON signatures cover (RFC 8785 without nulls): the fast road through the
standard library's encoder writes exactly what the reference library, `rfc8785`, writes."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.shared.canonical_json import CanonicalizationError, canonical, without_nulls
from tests.samples import every_event

# Any JSON value, with what the fast road must hand back to the reference: floats of every
# magnitude, unsafe integers, non-ASCII keys, NUL characters, lone surrogates.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["\x000\x00", 'a"\x00', "\ud800", 'é\n\t"\\\u2028😀'])
)
KEYS = st.text() | st.sampled_from(["\x001\x00", "\ue000", "😀", "a", "b"])
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner) | st.dictionaries(KEYS, inner), max_leaves=30
)


def reference(value: object) -> bytes | type[CanonicalizationError]:
    try:
        return rfc8785.dumps(without_nulls(value))
    except CanonicalizationError:
        return CanonicalizationError


@settings(max_examples=1500, deadline=None)
@given(JSON)
def test_it_writes_what_the_reference_writes(value: object) -> None:
    expected = reference(value)
    if expected is CanonicalizationError:
        with pytest.raises(CanonicalizationError):
            canonical(value)
    else:
        assert canonical(value) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.0, b"2"),
        (1e-7, b"1e-7"),
        (0.1, b"0.1"),
        (1e16, b"10000000000000000"),
        (1e21, b"1e+21"),
        (-0.0, b"0"),
        (8e-06, b"0.000008"),
        ({"b": None, "a": [None, 1]}, b'{"a":[null,1]}'),
        ({"é": 1, "z": 2}, b'{"z":2,"\xc3\xa9":1}'),
    ],
)
def test_numbers_and_nulls_as_rfc8785_writes_them(value: object, text: bytes) -> None:
    assert canonical(value) == text


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_each_sample_event_is_written_as_the_reference_writes_it(event) -> None:
    value = event.model_dump(mode="json")
    assert canonical(value) == rfc8785.dumps(without_nulls(value))
