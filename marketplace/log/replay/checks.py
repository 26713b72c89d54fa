"""Every recorded decision checked: each task's `AuctionClosed`, by the checks of its kind (a
refusal, a lean auction, the paper's auction), against the rest of the log, and the rules of the
market over the whole log (`market_checks`: graded = awarded); what `sale replay` reports.

Evidence that is absent is not checked (a log read while the recorder lags, or only some
streams); evidence that is present must agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from marketplace.log.gc_pause import paused_gc
from marketplace.log.replay.discrepancy import Discrepancy, differ
from marketplace.log.replay.history import History, index
from marketplace.log.replay.lean_checks import check_lean
from marketplace.log.replay.market_checks import check_awards
from marketplace.log.replay.paper_checks import check_closed
from marketplace.log.replay.refusal_checks import check_refusal
from schemas.events import Event


def verify(events: Iterable[Event]) -> list[Discrepancy]:
    """Every AuctionClosed in `events` recomputed and checked against the rest of the log; then
    every outcome and result against the award (`market_checks`)."""
    events = list(events)
    with paused_gc():
        return _verify(index(events)) + check_awards(events)


def _verify(history: History) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    for task_id, closes in history.closed.items():
        mine = differ(task_id, "AuctionClosed events", len(closes), 1)
        for closed in closes:
            if closed.refused:
                mine += check_refusal(closed, history.evidence.get(task_id))
            elif closed.mechanism == "lean":
                mine += check_lean(closed, history.evidence.get(task_id))
            else:
                mine += check_closed(closed, history.evidence.get(task_id))
        found += sorted(dict.fromkeys(mine), key=_cause_first)  # once, however many saw it
    return found


def _cause_first(found: Discrepancy) -> int:
    """Within an auction, a named weight first, then the decision, then the terms it moved."""
    name = found.field
    return 0 if name.startswith("weights.") else 1 if not name.startswith("bids[") else 2
