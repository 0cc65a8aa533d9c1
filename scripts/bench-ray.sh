#!/usr/bin/env bash
# Per-candidate overhead of the Ray evaluator vs the local one: the same sequential search
# (config/tiny.toml, in_flight 1, no final training) run once with each back end against a
# local Ray head on 127.0.0.1 (started and stopped here). Overhead per candidate =
# (wall with Ray - wall local) / candidates; share = overhead / mean proxy seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-libtorch.sh
ray="$(scripts/setup-ray.sh)"
n="${1:-6}"
export OMP_NUM_THREADS=1 ISTS__FINAL__TOP_K=0 ISTS__SEARCH__IN_FLIGHT=1
cargo build --release --quiet
bin="$PWD/target/release/ists"
runs="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
gcs=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tmp="/tmp/rb$$"
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "$ray" start --head --node-ip-address=127.0.0.1 \
  --dashboard-host=127.0.0.1 --port="$gcs" --dashboard-port="$port" --num-cpus=2 \
  --include-dashboard=true --disable-usage-stats --temp-dir="$tmp" >/dev/null
trap '"$ray" stop --force >/dev/null 2>&1; rm -rf "$tmp" "$runs"' EXIT
until python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/api/version')" 2>/dev/null; do sleep 0.5; done
run() { # name backend
  local t0 t1
  t0=$(date +%s.%N)
  ISTS__RUNS_DIR="$runs" ISTS__EVALUATORS__BACKEND="$2" \
  ISTS__EVALUATORS__RAY__ADDRESS="http://127.0.0.1:$port" ISTS__EVALUATORS__RAY__MAX_IN_FLIGHT=1 \
  ISTS__EVALUATORS__RAY__BINARY="$bin" \
    "$bin" search --config config/tiny.toml --budget "$n" --name "$1" >/dev/null 2>&1
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
wl=$(run local local)
wr=$(run ray ray)
python3 - "$runs" "$n" "$wl" "$wr" <<'PY'
import json, sys
runs, n, wl, wr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def proxy(name):
    xs = [json.loads(l)["seconds"] for l in open(f"{runs}/{name}/journal.jsonl")]
    assert len(xs) == n, (name, len(xs))
    return sum(xs) / len(xs)
pl, pr = proxy("local"), proxy("ray")
over = (wr - wl) / n
print("| back end | candidates | wall s | wall s / candidate | mean proxy s |")
print("|---|---:|---:|---:|---:|")
print(f"| local | {n} | {wl:.2f} | {wl/n:.2f} | {pl:.2f} |")
print(f"| ray | {n} | {wr:.2f} | {wr/n:.2f} | {pr:.2f} |")
print(f"\nRay overhead per candidate: {over:.2f} s = {100*over/pl:.0f}% of the mean proxy time")
PY
