"""`sale monitor`: one readable line per event on every stream, for people watching a run (a
search task's result adds a line per step of its agent's tool loop). An event shown already (a
replay, or a redelivery) is not shown again: the last `SHOWN_KEPT` ids are remembered."""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID

from marketplace.log.lines import Kinds, story
from marketplace.shared.bus import Bus, Source
from marketplace.shared.config import Config
from schemas.events import Event
from schemas.topics import STREAMS

SHOWN_KEPT = 100_000


def attach(bus: Bus, config: Config, group: str = "monitor") -> None:
    answered = Kinds()
    shown: OrderedDict[UUID, None] = OrderedDict()

    async def show(event: Event, source: Source) -> None:
        if event.event_id in shown:
            return
        shown[event.event_id] = None
        if len(shown) > SHOWN_KEPT:
            shown.popitem(last=False)
        print(story(event, answered=answered(event)), flush=True)

    bus.subscribe(list(STREAMS), group, show, from_start=False)
