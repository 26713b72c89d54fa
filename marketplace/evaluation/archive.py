"""The benchmark's computed work as a file, so it survives a move to a fresh machine.

`sale bench export` writes every kept completion (agents.cache) and every matrix cell
(marketplace.evaluation.matrix) to one gzipped JSON-lines file; `sale bench matrix` and
`sale bench live` load it first when it exists, skipping rows already present.
With it, a benchmark interrupted on
one machine resumes on another without recomputing a token.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import asyncpg

from marketplace.shared.migrate import apply_migrations

DEFAULT_PATH = Path("archive/benchmark.jsonl.gz")
_TABLES = {
    "completions": ("key", "model", "completion"),
    "matrix_cells": ("matrix", "task_id", "agent_id", "kind", "event", "seen"),
}
_DEFAULTS = {"seen": ""}  # columns an older archive lacks
_JSON_COLUMNS = {"completion", "event"}


async def export(conn: asyncpg.Connection, path: Path) -> dict[str, int]:
    counts = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wt", compresslevel=9) as out:
        for table, columns in _TABLES.items():
            keys = ", ".join(c for c in columns if c not in _JSON_COLUMNS | set(_DEFAULTS))
            rows = await conn.fetch(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {keys}")
            for row in rows:
                record = {c: json.loads(row[c]) if c in _JSON_COLUMNS else row[c] for c in columns}
                out.write(json.dumps({"table": table, **record}, sort_keys=True) + "\n")
            counts[table] = len(rows)
    partial.rename(path)
    return counts


async def restore(conn: asyncpg.Connection, path: Path) -> dict[str, int]:
    """Loads `path` into the database; returns the rows added per table."""
    await apply_migrations(conn)
    batches: dict[str, list[tuple]] = {table: [] for table in _TABLES}
    with gzip.open(path, "rt") as lines:
        for line in lines:
            record = json.loads(line)
            columns = _TABLES[record["table"]]
            batches[record["table"]].append(
                tuple(
                    json.dumps(record[c]) if c in _JSON_COLUMNS else record.get(c, _DEFAULTS.get(c))
                    for c in columns
                )
            )
    added = {}
    for table, rows in batches.items():
        columns = _TABLES[table]
        before = await conn.fetchval(f"SELECT count(*) FROM {table}")
        await conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))}) ON CONFLICT DO NOTHING",
            rows,
        )
        added[table] = await conn.fetchval(f"SELECT count(*) FROM {table}") - before
    return added
