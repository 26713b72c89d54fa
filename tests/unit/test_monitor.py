from __future__ import annotations

import pytest

from marketplace.services.monitor import summarize
from schemas.events import Event
from tests.samples import every_event


@pytest.mark.parametrize("event", every_event(), ids=lambda e: e.type)
def test_every_event_summarizes_to_one_line_naming_its_type(event: Event) -> None:
    line = summarize(event)
    assert line.startswith(event.type)
    assert "\n" not in line
