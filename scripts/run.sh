#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv, then runs the marketplace from
# ./sale.toml (local Tansu broker, embedded Postgres unless DATABASE_URL is set) in the
# foreground. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh embedded
exec .venv/bin/sale --config sale.toml up "$@"
