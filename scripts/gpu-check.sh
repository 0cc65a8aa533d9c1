#!/usr/bin/env bash
# The GPU check of the evaluator, in two halves: the GPU host has torch 2.11.0+cu130 in its
# Python but no Rust toolchain and no network; the build machine has both but no GPU.
#
#   scripts/gpu-check.sh build   (build machine) the `ists` binary with `--features cuda`,
#                                linked against the same torch 2.11.0 wheel, staged in gpu-check/
#                                (git-ignored, about 25 MB; copy it, or `carry` it, to the host)
#   scripts/gpu-check.sh run     (GPU host, repository root) within 5 minutes:
#                                1. `ists bench gpu`: cuda:0 against cpu on the same architecture,
#                                   data and seed (forecasts, first loss and proxy score within
#                                   tolerance), a real CUDA out-of-memory classified `cuda_oom`,
#                                   and the proxy time per candidate on GPU and CPU as a table;
#                                2. a short search on `devices = ["all"]` through the actors, with
#                                   two real out-of-memory faults injected: the candidate that hit
#                                   them is recorded as failed `cuda_oom`, the evaluator is rebuilt
#                                   and every other candidate is evaluated.
#
#   scripts/gpu-check.sh study [SECONDS]   (GPU host, after run) the METR-LA joint-space paired
#                                comparison and fidelity ground truth on cuda:0 for SECONDS (default 420),
#                                resumable across sessions: finished rows come back in $OUT, and
#                                the searches cut off mid-way keep their run directories in
#                                gpu-check/runs, copied to $OUT/study-runs; put that copy back in
#                                gpu-check/runs before the next session carries gpu-check
#
# Results go to $OUT when set (the device tool's output folder), else gpu-check/out.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=gpu-check

build() {
  scripts/setup-libtorch.sh --cuda
  CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda -p ists-actors --bin ists
  mkdir -p "$stage"
  cp target/cuda/release/ists "$stage/ists"
  strip --strip-debug "$stage/ists" 2>/dev/null || true
  if ! readelf -d "$stage/ists" | grep -q 'libtorch_cuda.so'; then
    echo "gpu-check: $stage/ists does not link libtorch_cuda.so (is the cuda feature on?)" >&2
    exit 1
  fi
  echo "gpu-check: staged $stage/ists ($(du -h "$stage/ists" | cut -f1)); on the GPU host run: scripts/gpu-check.sh run" >&2
}

# The host's torch 2.11.0 libraries for the binary (sets py, torchlib, tv; exits otherwise).
host_torch() {
  py=$(command -v python3 || command -v python)
  torchlib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
    echo "gpu-check: $py cannot import torch; the binary needs the host's torch 2.11.0 libraries" >&2; exit 1; }
  tv=$("$py" -c 'import torch; print(torch.__version__)')
  case "$tv" in
    2.11.0*) ;;
    *) echo "gpu-check: the host has torch $tv; the binary is built against 2.11.0 (libtorch's ABI changes between versions)" >&2; exit 1 ;;
  esac
  # The host's torch replaces the build machine's libtorch (the binary's rpath points there);
  # libtorch_cuda finds cuBLAS, cuDNN, ... through its own rpath into the host's nvidia wheels.
  export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
run() {
  local out="${OUT:-$stage/out}" bin="$stage/ists" fails=0
  mkdir -p "$out"
  [ -x "$bin" ] || { echo "gpu-check: no $bin; run 'scripts/gpu-check.sh build' on the build machine first" >&2; exit 1; }
  host_torch
  {
    echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "torch $tv ($torchlib)"
    local gpu
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null) \
      || gpu=$("$py" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null) \
      || gpu="none visible (neither nvidia-smi nor torch.cuda found one)"
    echo "GPU: $gpu"
    echo "CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //' || true)"
    echo "libtorch resolved as:"
    ldd "$bin" 2>&1 | grep -E 'libtorch|libc10' | sed 's/^/  /' || echo "  (ldd unavailable)"
  } | tee "$out/environment.txt"

  echo; echo "## 1. ists bench gpu (cuda:0 against cpu)"
  if ! timeout 170 "$bin" bench gpu --out "$out/bench-gpu.json" 2> "$out/bench-gpu.log" | tee "$out/bench-gpu.md"; then
    echo "FAILED: bench gpu (log tail below, whole log in $out/bench-gpu.log)"; tail -n 20 "$out/bench-gpu.log"; fails=$((fails + 1))
  fi

  echo; echo "## 2. search on devices = [\"all\"] with two real out-of-memory faults"
  rm -rf "$out/runs"
  if NO_COLOR=1 ISTS__RUNS_DIR="$out/runs" timeout 110 "$bin" search --config config/gpu-check.toml \
      --name gpu-check --inject-failures 2 > "$out/search.txt" 2> "$out/search.log"; then
    tail -n 12 "$out/search.txt"
  else
    echo "FAILED: search (log tail below)"; tail -n 20 "$out/search.log"; fails=$((fails + 1))
  fi
  grep -m1 'one evaluator actor per device' "$out/search.log" | sed 's/^.*devices=/evaluator devices: /' || true
  # Every fault is in summary.json: under retried_faults when the retry (on the rebuilt
  # evaluator) succeeded, under eval_failures when the candidate failed twice.
  local ooms
  ooms=$("$py" -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(s.get("retried_faults", {}).get("cuda_oom", 0) + s.get("eval_failures", {}).get("cuda_oom", 0))' \
    "$out/runs/gpu-check/summary.json" 2>/dev/null || echo 0)
  echo "evaluator faults classified cuda_oom (evaluator rebuilt each time): $ooms of 2"
  [ "$ooms" -eq 2 ] || { echo "FAILED: expected 2 out-of-memory faults classified cuda_oom"; fails=$((fails + 1)); }
  if ! "$py" - "$out/runs/gpu-check/journal.jsonl" <<'PY'
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cands = [e for e in entries if "hash" in e and "status" in e]
ids = [e["id"] for e in cands]
failed = [e for e in cands if e["status"].get("status") == "failed"]
ok = [e for e in cands if e["status"].get("status") == "ok"]
print(f"journal: {len(cands)} candidates, {len(ok)} ok, {len(failed)} failed "
      + ", ".join(f"(candidate {e['id']}: {e['status'].get('kind')})" for e in failed))
problems = []
if len(ids) != len(set(ids)):
    problems.append("a candidate was recorded twice")
if len(cands) != 6:
    problems.append(f"{len(cands)} candidates recorded, the budget is 6")
# Each fault fails one attempt; a candidate is retried once on the rebuilt evaluator, so it is
# recorded as failed only when both faults hit it (which one they hit depends on timing).
if any(e["status"].get("kind") != "cuda_oom" for e in failed):
    problems.append("a candidate failed with a kind other than cuda_oom")
if problems:
    print("FAILED:", "; ".join(problems))
    sys.exit(1)
PY
  then fails=$((fails + 1)); fi
  if [ -f "$out/runs/gpu-check/model/weights.safetensors" ]; then
    echo "final model exported: $out/runs/gpu-check/model"
  else
    echo "FAILED: no exported final model"; fails=$((fails + 1))
  fi

  echo
  if [ "$fails" -eq 0 ]; then echo "gpu-check: PASSED"; else echo "gpu-check: $fails check(s) FAILED"; exit 1; fi
}

# The search-quality studies on cuda:0 for SECONDS (default 420), all resumable (the device
# gets the working tree, so a later session resumes the same files; they are copied to $OUT):
#  - the METR-LA paired comparison with the chickenpox prior (config/compare-metr-la-joint-prior.toml
#    with the evaluators on cuda:0; offline-prior and random), one process per seed index 0-7, in
#    bench/results/search-metr-la-joint-prior-gpu.jsonl (its own file: every seed's methods on one
#    device);
#  - the METR-LA week joint-space fidelity ground truth (config/fidelity-metr-la-joint.toml), four
#    samples of designs (search seeds 11-14) in bench/results/fidelity-metr-la-joint-gpu-s<seed>.jsonl.
#    The samples are independent draws from one space, so their designs may be pooled (one line
#    per design hash) once each has some.
# GPU seconds make their own cost shares: these files stay apart from the CPU ones.
study() {
  local secs="${1:-420}" out="${OUT:-$stage/out}" bin="$stage/ists"
  mkdir -p "$out"
  [ -x "$bin" ] || { echo "gpu-check: no $bin; run 'scripts/gpu-check.sh build' first" >&2; exit 1; }
  host_torch
  local cfg="$out/compare-metr-la-joint-prior-gpu.toml" k seed extra pids=()
  # Each comparison search keeps its run directory here, so one cut off by the timeout resumes
  # in the next session (`ists baseline` resumes runs/compare-<file>-<method>-seed<k>).
  export ISTS__RUNS_DIR="$stage/runs"
  mkdir -p "$ISTS__RUNS_DIR"
  { cat config/compare-metr-la-joint-prior.toml; printf '\n[evaluators]\ndevices = ["cuda:0"]\n'; } > "$cfg"
  for k in 0 1 2 3 4 5 6 7; do
    OMP_NUM_THREADS=1 timeout "$secs" "$bin" baseline --config "$cfg" --seeds $((k + 1)) \
      --from-seed "$k" --methods offline-prior,random \
      --results bench/results/search-metr-la-joint-prior-gpu.jsonl \
      > "$out/compare-k$k.txt" 2> "$out/compare-k$k.log" &
    pids+=("$!")
    # The first process writes the results file's settings fingerprint; the others read it.
    [ "$k" = 0 ] && sleep 5
  done
  for seed in 11 12 13 14; do
    # The hand designs once, in the first sample's file.
    extra=(--extra); [ "$seed" = 11 ] && extra=(--extra config/reference-arch.json,config/gwn-arch.json)
    ISTS__SEARCH__SEED=$seed OMP_NUM_THREADS=1 timeout "$secs" "$bin" fidelity \
      --config config/fidelity-metr-la-joint.toml --n 30 --truth-seeds 2 "${extra[@]}" --device cuda:0 \
      --results "bench/results/fidelity-metr-la-joint-gpu-s$seed.jsonl" \
      > "$out/fidelity-s$seed.txt" 2> "$out/fidelity-s$seed.log" &
    pids+=("$!")
  done
  wait "${pids[@]}" || true
  cp bench/results/search-metr-la-joint-prior-gpu.jsonl* bench/results/fidelity-metr-la-joint-gpu-s*.jsonl* "$out/" 2>/dev/null || true
  cp -r "$ISTS__RUNS_DIR" "$out/study-runs" 2>/dev/null || true
  echo "comparison rows: $(grep -c . bench/results/search-metr-la-joint-prior-gpu.jsonl 2>/dev/null || echo 0)"
  for seed in 11 12 13 14; do
    echo "fidelity sample $seed: $(grep -c . "bench/results/fidelity-metr-la-joint-gpu-s$seed.jsonl" 2>/dev/null || echo 0) designs"
  done
}

case "${1:-}" in
  build) build ;;
  run) run ;;
  study) study "${2:-420}" ;;
  *) echo "usage: scripts/gpu-check.sh build|run|study [SECONDS]" >&2; exit 2 ;;
esac
