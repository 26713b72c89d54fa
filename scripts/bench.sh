#!/usr/bin/env bash
# The whole benchmark, in order; every step resumes where an interrupted run stopped, so the
# script can simply be run again. Postgres: $DATABASE_URL, else the embedded one of sale.toml.
#   1. the matrix: every agent bids on, judges and executes every task of the training split
#      (MBPP 0–99) and the evaluation split (HumanEval, all 164), two model processes at once;
#   2. the weights, fitted on the training split only;
#   3. SALE with refinement through the live marketplace: three task orders of the full
#      mechanism, one without memory;
#   4. the report: docs/bench/README.md and its plots.
# bench/archive.jsonl.gz (the computed work, `sale bench export`) is loaded first if present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh embedded,models,memory
.venv/bin/sale models install
sale=(.venv/bin/sale --config sale.toml)
"${sale[@]}" bench matrix --tasks mbpp:0:100 humaneval:0:164
"${sale[@]}" weights fit --tasks mbpp:0:100 --out weights.toml
for order in 0 1 2; do
  "${sale[@]}" bench live --variant full --order "$order" --tasks humaneval:0:164
done
"${sale[@]}" bench live --variant no-memory --order 0 --tasks humaneval:0:164
"${sale[@]}" bench export
"${sale[@]}" report --bench --train mbpp:0:100 --test humaneval:0:164 --out docs/bench
