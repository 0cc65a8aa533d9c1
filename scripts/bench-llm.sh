#!/usr/bin/env bash
# Latency and tokens per valid candidate, chain-of-thought vs tree-of-thought, against the
# bundled local model (gemma-3-270m, 1 thread). A valid candidate is an evaluated design the
# LLM proposed (offline fallbacks excluded). Run on an otherwise idle machine: the model slows
# badly when a compile competes for the cores. Usage: scripts/bench-llm.sh [budget]
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET="${1:-6}"
scripts/setup-libtorch.sh >/dev/null
scripts/local-llm/setup.sh >/dev/null
cargo build -q -p ists-actors
RUNS="$(mktemp -d)"
export OMP_NUM_THREADS=1 ISTS__RUNS_DIR="$RUNS" ISTS__FINAL__TOP_K=0 \
    ISTS__LLM__TEMPERATURE=0 ISTS__LLM__MAX_TOKENS=512 ISTS__SEARCH__MAX_REPAIRS=1
for mode in cot tot; do
    target/debug/ists search --config config/tiny.toml --llm local --mode "$mode" \
        --budget "$BUDGET" --name "$mode" >/dev/null 2>&1
done
python3 - "$RUNS" <<'PY'
import json, sys, pathlib
print("| mode | evaluated | valid (LLM) | fallbacks | requests | LLM s / valid | prompt tok / valid | completion tok / valid | cached tok / valid | rejected |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for mode in ["cot", "tot"]:
    s = json.loads((pathlib.Path(sys.argv[1]) / mode / "summary.json").read_text())
    valid = max(1, s["evaluated"] - s["fallbacks"])
    u = s["usage"]
    print(f"| {mode} | {s['evaluated']} | {s['evaluated'] - s['fallbacks']} | {s['fallbacks']} | {s['requests']} "
          f"| {s['llm_seconds'] / valid:.1f} | {u['prompt_tokens'] / valid:.0f} | {u['completion_tokens'] / valid:.0f} "
          f"| {u['cached_tokens'] / valid:.0f} | {json.dumps(s['rejected'])} |")
PY
rm -rf "$RUNS"
