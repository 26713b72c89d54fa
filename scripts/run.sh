#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv (with llama.cpp, the embedding model and
# the search tool), installs the three local models and the wiki corpus's search index, then
# runs `sale run` from ./sale.toml — a local Tansu broker, an embedded Postgres (unless
# DATABASE_URL is set), the services and agents S, M and L — on HumanEval problems 0–9 through
# real auctions, with live progress and a final table.
# Arguments go to `sale run` (e.g. `--tasks mbpp:0:5`). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh local,embedded,bench,models,memory,search
.venv/bin/sale models install
.venv/bin/sale corpus install wiki
exec .venv/bin/sale --config sale.toml run "$@"
