"""The one renderer of events as lines of text (monitor, job and audit)."""

from __future__ import annotations

import pytest

from marketplace.log.lines import gist, line
from schemas.events import Event
from tests.samples import every_event


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_every_event_renders_to_one_line_naming_its_type_and_key(event: Event) -> None:
    text = line(event)
    assert text.startswith(event.type)
    assert f" {event.key}: " in text
    assert "\n" not in text
    assert gist(event), "every event type has something to say"
