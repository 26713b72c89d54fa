#!/usr/bin/env bash
# The whole benchmark, in order; every step resumes where an interrupted run stopped, so the
# script can simply be run again. Postgres: $DATABASE_URL, else the embedded one of sale.toml.
#   1. the executor: every prompt shape on the development split (MBPP 100–199), the table in
#      docs/executors.md (sale.toml uses the one chosen there);
#   2. the matrix: every agent drafts every task of the training split (MBPP 0–99), the
#      development split (MBPP 100–199) and the evaluation split (HumanEval, all 164); on MBPP,
#      L also fixes M's failing drafts (to choose whether escalation should show them: it
#      should not, see weights.toml); plans and reviews for the paper's auction on the training
#      and evaluation splits; two model processes at once;
#   3. the paper's weights, fitted on the training split; the lean auction's priors, fitted on
#      the training split, its settings chosen on the development split;
#   4. the lean auction live through the marketplace on HumanEval 0–39, to check it against the
#      replay of the same tasks; the paper's auction with refinement live on the same tasks;
#   5. the report: docs/benchmark/README.md and its plots;
#   6. deep search: the searcher prompt chosen on the FanOutQA development split (docs/search.md),
#      then the search matrix of the development and evaluation splits and every method on the
#      evaluation split (docs/benchmark/search/README.md);
#   7. the price frontier: every method priced again with the small agents' prices swept from
#      this machine's ratio to L's down to 1/20 (docs/benchmark/frontier/README.md).
# archive/benchmark.jsonl.gz (the computed work, `sale bench export`) is loaded first if present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh local,embedded,bench,models,memory,search
.venv/bin/sale models install
.venv/bin/sale corpus install wiki
sale=(.venv/bin/sale --config sale.toml)
"${sale[@]}" bench executors --tasks mbpp:100:200 --with-plan --out docs/executors.md
"${sale[@]}" bench matrix --tasks mbpp:0:200 --plans mbpp:0:100 --escalate M:L
"${sale[@]}" bench matrix --tasks humaneval:0:164 --plans humaneval:0:164
"${sale[@]}" weights fit --tasks mbpp:0:100 --out weights.toml
"${sale[@]}" lean fit --train mbpp:0:100 --dev mbpp:100:200 --out weights.toml
"${sale[@]}" bench live --variant lean --order 0 --tasks humaneval:0:40
"${sale[@]}" bench live --variant full --order 0 --tasks humaneval:0:40
"${sale[@]}" report --bench --train mbpp:0:100 --test humaneval:0:164 --out docs/benchmark
"${sale[@]}" bench executors --tasks fanoutqa-dev:0:23 --agents M L --out docs/search.md
"${sale[@]}" bench matrix --tasks fanoutqa-dev:0:23 fanoutqa-eval:0:48 --plans fanoutqa-eval:0:48
"${sale[@]}" bench compare --train fanoutqa-dev:0:23 --test fanoutqa-eval:0:48 --no-plans \
  --out docs/benchmark/search
"${sale[@]}" bench frontier --train mbpp:0:100 --test humaneval:0:164 mbpp:200:397
"${sale[@]}" bench export
