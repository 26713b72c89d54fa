#!/usr/bin/env bash
# The test command: sets everything up itself, then lints and runs the whole suite.
# The broker is $KAFKA_BOOTSTRAP, else a Tansu the tests start on a free port; Postgres is
# $DATABASE_URL, else the server on 127.0.0.1:5432, else an embedded one. Each run gets a fresh
# database, each test its own topics and schema; only what the run started is stopped.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"  # exit 5 (no tests collected) fails like any other failure
