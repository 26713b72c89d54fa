"""`sale bench compare`: the whole comparison on any split, in one command. The matrix of the
training and test splits (drafts, escalations, plans and reviews) is filled by worker processes,
then every method is replayed on the test split; an escalation the lean replay asks for and the
matrix lacks is computed on the way, and the report is made again, until nothing is missing."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from marketplace.evaluation import lean_replay, matrix
from marketplace.evaluation.prices import PriceList
from marketplace.evaluation.report import bench_report
from marketplace.shared.config import Config


async def compare(
    config: Config,
    plan: matrix.Plan,
    worker: Sequence[str],
    workers: int,
    train: Sequence[str],
    test: Sequence[str],
    out: Path,
    price_list: PriceList | None = None,
) -> str:
    """The report's markdown (also written into `out`) on the task sets `train` and `test`,
    once `workers` processes of the command `worker` have filled `plan`'s matrix; priced with
    `price_list` if given, else at the config's prices."""
    await matrix.build_matrix(config, worker, plan, workers)
    return await report_filling_gaps(config, plan, train, test, out, price_list)


async def report_filling_gaps(
    config: Config,
    plan: matrix.Plan,
    train: Sequence[str],
    test: Sequence[str],
    out: Path,
    price_list: PriceList | None = None,
) -> str:
    """`bench_report`, retried after computing each draft the lean replay finds missing (it
    names one at a time): each retry has one cell more, so the loop ends once the replay needs
    nothing the matrix lacks. Not a retry on faults: any other error stops it at once."""
    while True:
        try:
            return await bench_report(config, train, test, out, price_list)
        except lean_replay.Missing as missing:
            print(f"computing what the lean replay needs: {missing}", flush=True)
            await matrix.work(config, _only(config, plan, missing))


def _only(config: Config, plan: matrix.Plan, missing: lean_replay.Missing) -> matrix.Plan:
    """The plan of the one escalation draft `missing` names, on its task of `plan`."""
    one = matrix.make_plan(config, [], [], [f"{missing.after}:{missing.agent_id}"])
    task = [p for p in plan.postings if p.task.task_id == missing.task_id]
    return dataclasses.replace(one, postings=tuple(task))
