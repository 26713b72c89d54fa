"""What an agent has answered, by event id: a replayed call or award is answered once.

Anyone who can read the topics can send a captured record again, signature and all; it then
carries the event id of the original. An agent keeps the ids of the events addressed to it that
it has answered, with when each happened (`occurred_at`, which the sender signed), and answers
none of them again. It keeps them for `window`: an event older than that is refused by its
age (`LLMAgent.stale`), so an id is needed only as long as its event is young enough to be
answered. Kept in a file (`path`, one line per id, appended once the answer is sent), the ids
outlive a restart; the file is cut down to the window each time it is opened. Without a file
they last as long as the process.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger("agent")


def utc_now() -> datetime:
    """The marketplace's clock, UTC, as every producer stamps its events (an agent shares only
    the contract and the shared I/O, so not `marketplace.core.clock`'s own)."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """A naive timestamp is read as UTC, the marketplace's only clock."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Handled:
    def __init__(self, window: timedelta) -> None:
        self.window = window
        self.path: Path | None = None
        self._ids: OrderedDict[uuid.UUID, datetime] = OrderedDict()  # in the order answered

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def keep_in(self, path: Path, now: datetime) -> int:
        """From now on the ids are kept in `path` too; takes in those it holds that are still in
        the window (the rest are dropped from the file). Returns how many were taken in."""
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = [(i, at) for i, at in _read(path) if now - at <= self.window]
        for event_id, at in kept:
            self._ids[event_id] = at
        temporary = path.with_suffix(".tmp")
        temporary.write_text("".join(_line(i, at) for i, at in kept))
        os.replace(temporary, path)  # cut down at once: a crash leaves the old file or the new
        self.path = path
        return len(kept)

    def add(self, answered: Iterable[tuple[uuid.UUID, datetime]], now: datetime) -> None:
        """Marks events answered (their answers are sent): in memory, then in the file, synced,
        so a crash right after cannot bring them back. Forgets those now out of the window."""
        fresh = [(i, aware(at)) for i, at in answered if i not in self._ids]
        for event_id, at in fresh:
            self._ids[event_id] = at
        if fresh and self.path is not None:
            with self.path.open("a") as file:
                file.write("".join(_line(i, at) for i, at in fresh))
                file.flush()
                os.fsync(file.fileno())
        while self._ids and now - next(iter(self._ids.values())) > self.window:
            self._ids.popitem(last=False)


def _line(event_id: uuid.UUID, at: datetime) -> str:
    return f"{event_id} {at.isoformat()}\n"


def _read(path: Path) -> list[tuple[uuid.UUID, datetime]]:
    """The file's entries; a line cut short by a crash, or otherwise unreadable, is skipped."""
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            event_id, at = line.split(" ")
            entries.append((uuid.UUID(event_id), aware(datetime.fromisoformat(at))))
        except ValueError:
            log.warning("%s:%d: not an answered event id, skipped: %r", path, number, line[:80])
    return entries
