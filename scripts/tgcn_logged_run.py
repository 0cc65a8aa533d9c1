#!/usr/bin/env python3
"""Where T-GCN's published Los-loop value comes from: its own logged run, read and rescored.

Usage: scripts/tgcn_logged_run.py TGCN_CHECKOUT [data/METR-LA/T-GCN_Los-loop/los_speed.csv]

TGCN_CHECKOUT is a checkout of lehaifeng/T-GCN (e.g. a `fetch` of it: `git -C MIRROR worktree
add DIR` or `git archive`). Its `out/tgcn_los_lr0.001_batch64_unit64_seq12_pre3_epoch5000/`
holds the run behind the 15-minute Los-loop row (12 steps in, 3 out, 5000 epochs): the test
RMSE and accuracy after every epoch (`test_rmse.csv`, `test_acc.csv`) and the test forecasts
of one epoch (`test_result.csv`). Its `T-GCN/T-GCN-TensorFlow/main.py` keeps the forecasts of
the epoch with the lowest *test* RMSE and prints that epoch's metrics.

This prints:
- the epoch with the lowest test RMSE, that RMSE, and the test RMSE of the last epoch and the
  range over the last 100 epochs (what the run gives without choosing its epoch on test);
- the five metrics of the kept forecasts, recomputed here with T-GCN's definitions (as
  `ists::metrics::tgcn` computes them, in mph, pooled over the 3 steps) against the targets
  read from `los_speed.csv` on T-GCN's split: the first 80% of the 2016 steps (1612) for
  training, test windows starting at step 1612, 389 of them (its loop stops one window short of
  the last; ours, 390, include it). The same RMSE as the logged minimum checks the alignment of
  windows, steps and sensors, and the formulas.

Pure Python, a few seconds. Used for BENCHMARKS.md, "T-GCN's Los-loop protocol reproduced".
"""
import csv
import math
import os
import sys

RUN = "out/tgcn_los_lr0.001_batch64_unit64_seq12_pre3_epoch5000"
SEQ_LEN = 12  # steps in
PRE_LEN = 3  # steps out: 15 minutes
TRAIN_RATE = 0.8


def numbers(path, skip=0):
    """The rows of a CSV file of numbers, from row `skip` on; a bad value names its place."""
    with open(path) as f:
        rows = [r for r in csv.reader(f) if r][skip:]
    out = []
    for i, r in enumerate(rows, start=skip + 1):
        try:
            out.append([float(v) for v in r])
        except ValueError as e:
            sys.exit(f"tgcn_logged_run: {path}, row {i}: {e}")
    return out


def column(path):
    """One number per row (T-GCN writes its per-epoch lists with pandas, one value a row)."""
    return [r[0] for r in numbers(path)]


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    checkout = argv[1]
    speed_path = argv[2] if len(argv) == 3 else "data/METR-LA/T-GCN_Los-loop/los_speed.csv"
    run = os.path.join(checkout, RUN)
    for name in ("test_rmse.csv", "test_acc.csv", "test_result.csv"):
        if not os.path.isfile(os.path.join(run, name)):
            sys.exit(f"tgcn_logged_run: no {name} in {run} (is {checkout} a lehaifeng/T-GCN checkout?)")

    rmse = column(os.path.join(run, "test_rmse.csv"))
    acc = column(os.path.join(run, "test_acc.csv"))
    if len(rmse) != len(acc):
        sys.exit(f"tgcn_logged_run: {len(rmse)} test RMSEs but {len(acc)} accuracies")
    best = min(range(len(rmse)), key=rmse.__getitem__)
    tail = rmse[-100:]
    print(f"logged run: {len(rmse)} epochs; lowest test RMSE {rmse[best]:.6f} at epoch {best + 1} "
          f"(accuracy {acc[best]:.6f}); last epoch {rmse[-1]:.6f} (accuracy {acc[-1]:.6f}); last {len(tail)} epochs "
          f"{min(tail):.4f}-{max(tail):.4f}, mean {sum(tail) / len(tail):.4f}")

    if not os.path.isfile(speed_path):
        sys.exit(f"tgcn_logged_run: no {speed_path} (Los-loop's los_speed.csv)")
    with open(speed_path) as f:
        nodes = len(next(csv.reader(f), []))
    data = numbers(speed_path, skip=1)  # the first row names the sensors
    if any(len(r) != nodes for r in data):
        sys.exit(f"tgcn_logged_run: {speed_path}: rows of other lengths than its {nodes} sensor names")
    train_size = int(len(data) * TRAIN_RATE)
    windows = len(data) - train_size - SEQ_LEN - PRE_LEN
    if windows <= 0:
        sys.exit(f"tgcn_logged_run: {speed_path}: {len(data)} steps leave no test window")
    pred = numbers(os.path.join(run, "test_result.csv"))
    if len(pred) != windows * PRE_LEN or any(len(r) != nodes for r in pred):
        width = len(pred[0]) if pred else 0
        sys.exit(f"tgcn_logged_run: test_result.csv has {len(pred)} rows of {width} values, "
                 f"expected {windows} windows x {PRE_LEN} steps = {windows * PRE_LEN} rows of {nodes}")
    # Row w * PRE_LEN + k is window w's step k + 1 (T-GCN's reshape of [windows, steps, nodes]).
    y = [data[train_size + w + SEQ_LEN + k] for w in range(windows) for k in range(PRE_LEN)]
    ys = [v for r in y for v in r]
    ps = [v for r in pred for v in r]
    n = len(ys)
    err = [a - b for a, b in zip(ys, ps)]
    sse = sum(e * e for e in err)
    mean_y = sum(ys) / n
    mean_e = sum(err) / n
    var_y = sum((v - mean_y) ** 2 for v in ys) / n
    var_e = sum((e - mean_e) ** 2 for e in err) / n
    scores = {
        "rmse": math.sqrt(sse / n),
        "mae": sum(abs(e) for e in err) / n,
        "accuracy": 1 - math.sqrt(sse) / math.sqrt(sum(v * v for v in ys)),
        "r2": 1 - sse / (var_y * n),
        "var": 1 - var_e / var_y,
    }
    print(f"kept forecasts rescored: {windows} test windows from step {train_size}, {PRE_LEN} steps, "
          f"{nodes} sensors: " + ", ".join(f"{k} {v:.6f}" for k, v in scores.items()))


if __name__ == "__main__":
    main(sys.argv)
