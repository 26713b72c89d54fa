"""Where a running `sale up` can be reached, for the commands run beside it.

`sale up` starts a broker on a free port, an embedded Postgres and the keys on first start;
a user who then types `sale submit` or `sale serve` in another terminal should not have to copy
four addresses into the environment. So `sale up` writes them to `<run dir>/endpoints.json`
while it runs, and every other command with the same config file reads that file (in `.sale`
beside the config file, `sale up`'s run directory when started there) for whatever the
environment does not already say. A file whose `sale up` is gone is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

FILE = "endpoints.json"
NAMES = ("KAFKA_BOOTSTRAP", "DATABASE_URL", "SALE_KEYRING", "SALE_KEY_DIR")


@contextlib.contextmanager
def published(run_dir: Path, env: Mapping[str, str]) -> Iterator[Path]:
    """Writes the stack's endpoints (those of `NAMES` in `env`) while the block runs."""
    path = run_dir / FILE
    found = {name: env[name] for name in NAMES if env.get(name)}
    path.write_text(json.dumps({"pid": os.getpid(), **found}, indent=2) + "\n")
    try:
        yield path
    finally:
        if _pid(path) == os.getpid():  # ours still: another's is not ours to delete
            path.unlink(missing_ok=True)


def joined(env: Mapping[str, str], config_path: Path) -> dict[str, str]:
    """`env`, with the running stack's endpoints added where `env` has none."""
    running = read(config_path.absolute().parent / ".sale" / FILE)
    return {**running, **{k: v for k, v in env.items() if v}} if running else dict(env)


def _pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read(path: Path) -> dict[str, str]:
    """The endpoints in `path` if its `sale up` still runs, else none."""
    try:
        found = json.loads(path.read_text())
        os.kill(int(found["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {name: str(found[name]) for name in NAMES if found.get(name)}
