"""`sale monitor`: one readable line per event on every stream, for people watching a run (a
search task's result adds a line per step of its agent's tool loop)."""

from __future__ import annotations

from marketplace.log.lines import Kinds, story
from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import Config
from schemas.events import Event
from schemas.topics import STREAMS


def attach(bus: Bus, config: Config, group: str = "monitor") -> None:
    answered = Kinds()

    async def show(event: Event, source: Source) -> None:
        print(story(event, answered=answered(event)), flush=True)

    bus.subscribe(list(STREAMS), group, show, from_start=False)
