"""`sale monitor`: one readable line per event on every stream, for people watching a run."""

from __future__ import annotations

from marketplace.log.lines import line
from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import Config
from schemas.events import Event
from schemas.topics import STREAMS


def attach(bus: Bus, config: Config, group: str = "monitor") -> None:
    async def show(event: Event, source: Source) -> None:
        print(line(event), flush=True)

    bus.subscribe(list(STREAMS), group, show, from_start=False)
