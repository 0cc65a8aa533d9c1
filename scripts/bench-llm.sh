#!/usr/bin/env bash
# The bundled local model (gemma-3-270m Q4_K_M, 1 thread): raw decoding speed, plain and under
# the strict architecture schema, then latency and tokens per valid candidate of a short
# chain-of-thought and tree-of-thought search (a valid candidate is an evaluated design the LLM
# proposed; offline fallbacks are excluded). Run on an otherwise idle machine: the model slows
# badly when a compile competes for the cores. Usage: scripts/bench-llm.sh [budget]
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET="${1:-6}"
PORT=18094
scripts/setup-libtorch.sh >/dev/null
scripts/local-llm/setup.sh >/dev/null
cargo build -q -p ists-actors
RUNS="$(mktemp -d)"
export OMP_NUM_THREADS=1 ISTS__RUNS_DIR="$RUNS" ISTS__FINAL__TOP_K=0 ISTS__LLM__LOCAL__PORT=$PORT \
    ISTS__LLM__TEMPERATURE=0 ISTS__LLM__MAX_TOKENS=512 ISTS__SEARCH__MAX_REPAIRS=1
# One server for everything, so model loading is not part of any figure.
target/debug/ists llm serve >/dev/null 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; rm -rf "$RUNS"' EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$PORT" <<'PY'
import json, sys, time, urllib.request
port = sys.argv[1]
def slot(f, t):
    ends = {"from": {"type": "integer", "const": f}, "to": {"type": "integer", "const": t}}
    cell = {"type": "object", "additionalProperties": False, "required": ["from", "to", "op", "spatial", "temporal"],
            "properties": {**ends, "op": {"type": "string", "enum": ["STT", "TTS", "STP"]},
                           "spatial": {"type": "string", "enum": ["mix_gc", "dgcn", "s_trans"]},
                           "temporal": {"type": "string", "enum": ["linear_attn", "gdcc", "t_trans"]}}}
    plain = {"type": "object", "additionalProperties": False, "required": ["from", "to", "op"],
             "properties": {**ends, "op": {"type": "string", "enum": ["identity", "zero"]}}}
    return {"anyOf": [cell, plain]}
schema = {"type": "object", "additionalProperties": False, "required": ["edges"], "properties": {"edges": {
    "type": "array", "minItems": 6, "maxItems": 6, "prefixItems": [slot(f, t) for t in (1, 2, 3) for f in range(t)]}}}
msgs = [{"role": "user", "content": "Describe, in a long paragraph, how a neural network forecasts road traffic from sensors."}]
def ask(fmt, max_tokens):
    body = {"model": "m", "messages": msgs, "temperature": 0, "max_tokens": max_tokens}
    if fmt: body["response_format"] = fmt
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    t0 = time.time()
    r = json.load(urllib.request.urlopen(req, timeout=600))
    return time.time() - t0, r["usage"]
ask(None, 8)  # warm-up: the prompt is now cached, so the figures below are decoding
print("| request | completion tokens | seconds | tokens/s |")
print("|---|---:|---:|---:|")
for name, fmt in [("plain text", None),
                  ("strict json_schema (architecture)", {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": schema}})]:
    dt, u = ask(fmt, 256)
    print(f"| {name} | {u['completion_tokens']} | {dt:.2f} | {u['completion_tokens'] / dt:.1f} |")
PY
for mode in cot tot; do
    target/debug/ists search --config config/tiny.toml --llm local --mode "$mode" \
        --budget "$BUDGET" --name "$mode" >/dev/null 2>&1
done
python3 - "$RUNS" <<'PY'
import json, sys, pathlib
print()
print("| mode | evaluated | valid (LLM) | fallbacks | requests | LLM s / valid | prompt tok / valid | completion tok / valid | cached tok / valid | rejected |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for mode in ["cot", "tot"]:
    s = json.loads((pathlib.Path(sys.argv[1]) / mode / "summary.json").read_text())
    valid = s["evaluated"] - s["fallbacks"]
    d = max(1, valid)
    u = s["usage"]
    print(f"| {mode} | {s['evaluated']} | {valid} | {s['fallbacks']} | {s['requests']} "
          f"| {s['llm_seconds'] / d:.1f} | {u['prompt_tokens'] / d:.0f} | {u['completion_tokens'] / d:.0f} "
          f"| {u['cached_tokens'] / d:.0f} | {json.dumps(s['rejected'])} |")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
