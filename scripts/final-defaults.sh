#!/usr/bin/env bash
# The final-training defaults, chosen by measurement (forecast-quality issue, item 3): trains the
# hand designs with each setting and seed below and appends one JSON line per training to
# bench/results/final-defaults.jsonl (resumable: a line already there is not trained again).
#
#   scripts/final-defaults.sh chickenpox            # presets: chickenpox, metr-la-week
#   EPOCHS="6 40" SCHEDULES="constant cosine" SEEDS="42 43" scripts/final-defaults.sh metr-la-week
#   WEIGHT_DECAYS="0.0001 0.001" RESULTS=bench/results/final-weight-decay.jsonl \
#     scripts/final-defaults.sh chickenpox
#
# WEIGHT_DECAYS: the values of Adam's L2 decay (final.train.weight_decay) to train with; without
# it, the preset's own (its [final.train] value, else config/default.toml's). Every line records
# the value it trained with. Lines written before that field existed have none: they were all
# trained at 1e-4, the default then, and are shown so in the table; a rerun does not resume them.
# Each line: {"data", "arch", "epochs", "schedule", "warmup_epochs", "lr", "patience", "seed",
# "weight_decay", "epochs_run", "best_epoch", "val_mae", "test_mae", "seconds"}; the epoch is
# chosen on validation (early stopping restores the best weights), test is only reported.
# Every training runs on one intra-op thread, as the committed lines did (the metr-la-week preset
# itself uses every core), so a line repeats to the last digit.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${ISTS_BIN:-target/release/ists}"
out="${RESULTS:-bench/results/final-defaults.jsonl}"
[ -x "$bin" ] || { echo "final-defaults: no $bin (cargo build --release -p ists-actors --bin ists)" >&2; exit 1; }
[ "$#" -ge 1 ] || { echo "usage: scripts/final-defaults.sh chickenpox|metr-la-week ..." >&2; exit 2; }
archs="${ARCHS:-config/reference-arch.json config/gwn-arch.json}"
seeds="${SEEDS:-42 43}"
schedules="${SCHEDULES:-constant cosine}"
lr="${LR:-0.001}"
# The values as JSON writes them (1e-4 -> 0.0001), so a line's key is found again on resume.
canonical() { python3 -c 'import json, sys; print(" ".join(json.dumps(float(v)) for v in sys.argv[1:]))' "$@"; }
# The weight decay a preset trains with: its [final.train] value, else the default's.
preset_weight_decay() {
  python3 - "$1" <<'PY'
import json, sys, tomllib
value = tomllib.load(open("config/default.toml", "rb"))["final"]["train"]["weight_decay"]
value = tomllib.load(open(sys.argv[1], "rb")).get("final", {}).get("train", {}).get("weight_decay", value)
print(json.dumps(float(value)))
PY
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$out"
for data in "$@"; do
  case "$data" in
    # The preset's own epochs (6), and for chickenpox the converged training of the
    # comparisons (200 epochs, patience 20: their best epochs were 36-163).
    chickenpox) config=config/chickenpox.toml; epochs_default="6 200"; patience_default=20 ;;
    metr-la-week) config=config/metr-la-week.toml; epochs_default="6"; patience_default=8 ;;
    *) echo "final-defaults: unknown preset '$data' (chickenpox, metr-la-week)" >&2; exit 2 ;;
  esac
  patience="${PATIENCE:-$patience_default}"
  if [ -n "${WEIGHT_DECAYS:-}" ]; then
    weight_decays=$(canonical $WEIGHT_DECAYS)
  else
    weight_decays=$(preset_weight_decay "$config")
  fi
  for arch in $archs; do
    for epochs in ${EPOCHS:-$epochs_default}; do
      for schedule in $schedules; do
        # A cosine decay gets a one-epoch linear warm-up; a constant rate none.
        warmup=0; [ "$schedule" = constant ] || warmup=1
        for wd in $weight_decays; do
        for seed in $seeds; do
          key="\"data\":\"$data\",\"arch\":\"$arch\",\"epochs\":$epochs,\"schedule\":\"$schedule\",\"warmup_epochs\":$warmup,\"lr\":$lr,\"patience\":$patience,\"seed\":$seed,\"weight_decay\":$wd"
          if grep -qF "{$key," "$out"; then
            echo "final-defaults: $data $arch $epochs epochs $schedule wd $wd seed $seed: already measured" >&2
            continue
          fi
          echo "final-defaults: $data $arch $epochs epochs $schedule wd $wd seed $seed" >&2
          ISTS__FINAL__TRAIN__WEIGHT_DECAY="$wd" ISTS__FINAL__TRAIN__SCHEDULE="$schedule" ISTS__FINAL__TRAIN__WARMUP_EPOCHS="$warmup" \
            ISTS__FINAL__TRAIN__LR="$lr" ISTS__FINAL__TRAIN__PATIENCE="$patience" \
            ISTS__FINAL__TRAIN__SEED="$seed" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" ISTS__EVALUATORS__THREADS=1 \
            "$bin" train --arch "$arch" --config "$config" --epochs "$epochs" \
            --out "$tmp/result.json" > "$tmp/stdout.txt" 2> "$tmp/stderr.txt" || {
              echo "final-defaults: training failed:" >&2; tail -n 20 "$tmp/stderr.txt" >&2; exit 1; }
          python3 - "$tmp/result.json" "$key" >> "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
row = json.loads("{" + sys.argv[2] + "}")
row.update(epochs_run=r["epochs_run"], best_epoch=r["best_epoch"],
           val_mae=r["val"]["average"]["mae"], test_mae=r["test"]["average"]["mae"],
           seconds=r["seconds"])
print(json.dumps(row, separators=(",", ":")))
PY
        done
        done
      done
    done
  done
done
# The table: mean validation and test MAE per data set, design, epochs, schedule and weight
# decay (1e-4 where the line predates the field).
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    wd = str(r.get("weight_decay", 0.0001))
    groups.setdefault((r["data"], r["arch"], r["epochs"], r["schedule"], r["lr"], wd), []).append(r)
print("| data | design | epochs | schedule | lr | weight decay | seeds | val MAE | test MAE | best epochs |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---|")
for (d, a, e, s, lr, wd), g in sorted(groups.items()):
    v = statistics.mean(r["val_mae"] for r in g); t = statistics.mean(r["test_mae"] for r in g)
    be = ", ".join(str(r["best_epoch"]) for r in g)
    print(f"| {d} | {a} | {e} | {s} | {lr} | {wd} | {len(g)} | {v:.4f} | {t:.4f} | {be} |")
PY
