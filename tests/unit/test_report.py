"""The benchmark report's choice of live runs: only those on the evaluation's tasks."""

from __future__ import annotations

from marketplace.core.measures import TaskRun
from marketplace.evaluation.report import on_tasks


def run(task_id: str) -> TaskRun:
    return TaskRun(task_id, "L", True, ())


def test_live_runs_are_cut_to_the_evaluation_tasks_and_dropped_when_none_is_left() -> None:
    live = {
        "SALE-lean, live": [[run("he-0"), run("he-1")]],
        "SALE-paper with refinement, live": [[run("he-0")], [run("he-1")]],
    }
    assert on_tasks(live, {"he-0"}) == {"SALE-lean, live": [[run("he-0")]]}
    assert on_tasks(live, {"mbpp-200"}) == {}
    assert on_tasks(live, {"he-0", "he-1"}) == live
