#!/usr/bin/env bash
# Proxy evaluation time of the reference architecture, tch vs PyTorch eager, side by side.
# PyTorch comes from $TORCH_PYTHON (a python with torch==2.11.0), default python3.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-libtorch.sh
export OMP_NUM_THREADS=1
py="${TORCH_PYTHON:-python3}"
echo "## tch (ists bench proxy)"
cargo run --release --quiet -- bench proxy --repeat "${REPEAT:-3}"
echo
echo "## PyTorch eager (scripts/bench_pytorch.py, torch $("$py" -c 'import torch; print(torch.__version__)'))"
"$py" scripts/bench_pytorch.py --repeat "${REPEAT:-3}"
