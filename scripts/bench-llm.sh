#!/usr/bin/env bash
# The bundled local model (gemma-3-270m Q4_K_M, 1 thread) as the instructor: raw decoding
# speed, then chain-of-thought and tree-of-thought searches at several budgets with what each
# request gave (usable replies, duplicate rate, tokens and seconds per valid candidate, the best
# proxy score), beside the offline instructor and random search at the same number of
# candidates. A valid candidate is an evaluated design the LLM proposed (offline fallbacks are
# excluded). Run on an otherwise idle machine: the model slows badly when a compile competes
# for the cores. Usage: scripts/bench-llm.sh [budget ...]   (default: 4 8); ISTS_BENCH_TEMPERATURE
# sets the sampling temperature (default 0); ISTS_BENCH_MODES the instructor modes (default
# "cot tot"); any ISTS__ setting (e.g. ISTS__LLM__EXCLUDE_DESIGNS=0, ISTS__LLM__SEED=1) applies.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGETS=("$@")
[ ${#BUDGETS[@]} -eq 0 ] && BUDGETS=(4 8)
read -r -a MODES <<< "${ISTS_BENCH_MODES:-cot tot}"
PORT=18094
scripts/setup-libtorch.sh >/dev/null
scripts/local-llm/setup.sh >/dev/null
# ISTS_BIN: a binary built earlier (e.g. a copy, so the bench can run while the tree changes).
BIN="${ISTS_BIN:-target/debug/ists}"
[ -n "${ISTS_BIN:-}" ] || cargo build -q -p ists-actors
RUNS="${ISTS_BENCH_RUNS:-$(mktemp -d)}"
export OMP_NUM_THREADS=1 ISTS__RUNS_DIR="$RUNS" ISTS__FINAL__TOP_K=0 ISTS__LLM__LOCAL__PORT=$PORT \
    ISTS__LLM__TEMPERATURE="${ISTS_BENCH_TEMPERATURE:-0}" ISTS__LLM__MAX_TOKENS=768 ISTS__SEARCH__MAX_REPAIRS=1
# One server for everything, so model loading is not part of any figure.
"$BIN" llm serve >/dev/null 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null' EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
echo "runs in $RUNS"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$PORT" <<'PY'
import json, sys, time, urllib.request
port = sys.argv[1]
msgs = [{"role": "user", "content": "Describe, in a long paragraph, how a neural network forecasts road traffic from sensors."}]
def ask(max_tokens):
    body = {"model": "m", "messages": msgs, "temperature": 0, "max_tokens": max_tokens}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    t0 = time.time()
    r = json.load(urllib.request.urlopen(req, timeout=600))
    return time.time() - t0, r["usage"]
ask(8)  # warm-up: the prompt is now cached, so the figure below is decoding
dt, u = ask(256)
print(f"plain decoding: {u['completion_tokens']} tokens in {dt:.2f} s ({u['completion_tokens'] / dt:.1f} tokens/s)")
PY
for b in "${BUDGETS[@]}"; do
    for mode in "${MODES[@]}"; do
        [ -f "$RUNS/$mode-$b/summary.json" ] || "$BIN" search --config config/tiny.toml \
            --llm local --mode "$mode" --budget "$b" --name "$mode-$b" >/dev/null 2>&1
    done
    [ -f "$RUNS/offline-$b/summary.json" ] || "$BIN" search --config config/tiny.toml \
        --llm offline --budget "$b" --name "offline-$b" >/dev/null 2>&1
    [ -f "$RUNS/random-$b/summary.json" ] || ISTS__SEARCH__EXPLORATION_SHARE=1.0 "$BIN" search \
        --config config/tiny.toml --llm offline --budget "$b" --name "random-$b" >/dev/null 2>&1
done
python3 - "$RUNS" "${MODES[*]}" "${BUDGETS[@]}" <<'PY'
import json, sys, pathlib
runs = pathlib.Path(sys.argv[1])
modes = sys.argv[2].split()
print()
# valid (LLM): evaluated designs exactly as the model gave them; adjusted: duplicates the model
# repeated through its repair turns, replaced by the nearest unexplored design (one change away);
# fallbacks: proposals the offline instructor made instead. Duplicate rate: duplicate rejections
# over the complete designs the model proposed (valid + duplicates).
print("| instructor | budget | evaluated | valid (LLM) | adjusted | fallbacks | requests | usable replies | duplicate rate | LLM s / evaluated | prompt tok / evaluated | completion tok / evaluated | reasoning chars | best proxy MAE |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for b in sys.argv[3:]:
    for name in modes + ["offline", "random"]:
        p = runs / f"{name}-{b}" / "summary.json"
        if not p.exists():
            print(f"| {name} | {b} | (no summary) |")
            continue
        s = json.loads(p.read_text())
        best = s["best"]["score"] if s.get("best") else float("nan")
        if name in ("offline", "random"):
            print(f"| {name} | {b} | {s['evaluated']} | - | - | - | - | - | - | - | - | - | - | {best:.4f} |")
            continue
        adjusted = s.get("adjusted", 0)
        valid = s["evaluated"] - s["fallbacks"] - adjusted
        d = max(1, s["evaluated"])
        u = s["usage"]
        req = max(1, s["requests"])
        dups = s["rejected"].get("duplicate", 0)
        proposed = valid + dups
        dup_rate = dups / proposed if proposed else 0.0
        print(f"| llm-local {name} | {b} | {s['evaluated']} | {valid} | {adjusted} | {s['fallbacks']} | {s['requests']} "
              f"| {s.get('usable_replies', 0) / req:.0%} | {dup_rate:.0%} | {s['llm_seconds'] / d:.1f} "
              f"| {u['prompt_tokens'] / d:.0f} | {u['completion_tokens'] / d:.0f} | {s.get('reasoning_chars', 0)} | {best:.4f} |")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
