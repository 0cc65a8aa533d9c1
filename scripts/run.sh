#!/usr/bin/env bash
# Runs the `ists` binary (release build), installing libtorch first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-libtorch.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec cargo run --release --quiet -- "$@"
