"""The rules of the market checked over the whole log, beside the arithmetic of each decision:
graded = awarded (`marketplace.core.award`).

- One outcome per award: a task with more than one `TaskOutcome` names each one after the first.
- Each outcome is graded on the awarded result: an outcome whose `result_event_id` names a
  `TaskResult` that is not its task's awarded one (another agent's, a second delivery, a result
  of a task closed without a winner, or of one never awarded) is named, with the result it graded.
- One result per award: any `TaskResult` of the winner for the winning bid after its first is
  a second delivery (a replayed award made the winner work again) and is named.

An outcome without `result_event_id` is not held against any result: the verifier writes one
when no result was graded ("no result within ..."), and logs from before the field existed hold
only such outcomes; what they graded cannot be told. A result from an agent that did not win is
not a discrepancy by itself (the verifier refused it, and the log keeps the attempt) unless an
outcome graded it. An outcome naming a result that is not in the log is not checked (evidence
absent: a log read while the recorder lags).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from uuid import UUID

from marketplace.core.award import award_of, awarded_results
from marketplace.log.replay.discrepancy import Discrepancy
from schemas.events import Event, TaskOutcome, TaskResult


def check_awards(events: Iterable[Event]) -> list[Discrepancy]:
    """Every breach of graded = awarded in `events`, each naming the event that breaks it."""
    events = list(events)
    outcomes: dict[str, list[TaskOutcome]] = defaultdict(list)
    results: dict[UUID, TaskResult] = {}
    for event in events:
        if isinstance(event, TaskOutcome):
            outcomes[event.task_id].append(event)
        elif isinstance(event, TaskResult):
            results.setdefault(event.event_id, event)
    delivered = awarded_results(events)
    awarded = {r.event_id for r in delivered.values()}
    found = [*_second_deliveries(delivered, events)]
    for task_id, theirs in outcomes.items():
        found += _extra_outcomes(task_id, theirs)
        for outcome in theirs:
            graded = results.get(outcome.result_event_id) if outcome.result_event_id else None
            if graded is not None and graded.event_id not in awarded:
                mine = [r for a, r in delivered.items() if a[0] == task_id]
                found.append(_not_the_award(outcome, graded, mine[0] if mine else None))
    return found


def _second_deliveries(delivered: dict, events: list[Event]) -> list[Discrepancy]:
    return [
        Discrepancy(
            event.task_id,
            f"TaskResult {event.event_id}",
            f"a second result of the winner {event.agent_id}",
            f"one result per award (the first, {first.event_id}, counts)",
        )
        for event in events
        if isinstance(event, TaskResult)
        and (first := delivered.get(award_of(event))) is not None
        and event.event_id != first.event_id
    ]


def _extra_outcomes(task_id: str, outcomes: list[TaskOutcome]) -> list[Discrepancy]:
    first = outcomes[0].event_id
    return [
        Discrepancy(
            task_id,
            f"TaskOutcome {outcome.event_id}",
            "a second outcome for the task",
            f"one outcome per award (the first is {first})",
        )
        for outcome in outcomes[1:]
        if outcome.event_id != first
    ]


def _not_the_award(
    outcome: TaskOutcome, graded: TaskResult, awarded: TaskResult | None
) -> Discrepancy:
    award = f"the award's result, {awarded.event_id}" if awarded else "no awarded result"
    return Discrepancy(
        outcome.task_id,
        f"TaskOutcome {outcome.event_id}",
        f"graded TaskResult {graded.event_id} of {graded.agent_id} (bid {graded.bid_id})",
        award,
    )
