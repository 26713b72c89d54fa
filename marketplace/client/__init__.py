"""The marketplace's client, for Python code: post a task, get its answer back.

    async with Client(config) as client:
        outcome = await client.ask("Name three prime numbers.")
        outcome = await client.submit(task, checks)          # a TaskPosted and its TaskChecks
        outcomes = await client.submit_many([(task, checks), ...], concurrency=8)
        task_id = await client.post(task, checks)            # fire and forget
        outcome = await client.result(task_id)               # from the log, later

A layer of its own, above the log (whose `Outcome` fold it shares) and below the services: the
front door (`sale serve`) asks through it and answers in HTTP what its errors say. One module
per concept: `client` (posting and the `Client`), `waiting` (the one reader of the answer
streams), `lookup` (one task read back from the log), `errors` (the `SubmitError` family),
`records` (the check every record read passes).

`submit_many` raises none of the errors per task: each task's `Outcome` says what became of it.
"""

from __future__ import annotations

from marketplace.client.client import Client, general_task
from marketplace.client.errors import InvalidTask, Refused, SubmitError, SubmitTimeout, missing
from marketplace.client.lookup import result
from marketplace.log.outcomes import Outcome

__all__ = [
    "Client",
    "InvalidTask",
    "Outcome",
    "Refused",
    "SubmitError",
    "SubmitTimeout",
    "general_task",
    "missing",
    "result",
]
