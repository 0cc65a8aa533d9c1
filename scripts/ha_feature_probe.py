#!/usr/bin/env python3
"""Does a per-sensor historical average help a forecaster on Los-loop? A linear probe.

Usage: scripts/ha_feature_probe.py [--start YYYY-MM-DD] [data/METR-LA/T-GCN_Los-loop/los_speed.csv]

Before building the historical average (HA) into the data pipeline as an input feature (one of
issue 14's untried ideas), this asks whether the information is worth anything on the T-GCN
protocol's split (`config/los-loop-tgcn.toml`: training windows 0..1395, test windows
1612..1993, 12 steps in). For each forecast step k = 1..12 it fits one least-squares model,
pooled over sensors, on the training windows, and scores it on the test windows; the rows pool
steps 1..h as the protocol's 15/30/45/60-minute rows do. Three feature sets:

- `lags`: the last input value and those 1, 2, 5 and 11 steps before it;
- `lags+HA`: plus the HA of the target's slot of the day and of the last input's slot, fitted
  (as `ists::baselines::historical_average` fits it) on every step the training windows read,
  so a training target's own value is inside its HA (in-sample, as a naive feature would be);
- `lags+HA (leave-one-day-out)`: the same, but a training window's HA leaves out the day of the
  step it describes (with 288 steps a day, that is the step itself), so training sees the HA as
  the test does: built from other days.
- `lags+HA by day type (leave-one-day-out)`, only with `--start YYYY-MM-DD` (the calendar day of
  step 0, which starts at midnight): the same, the HA taken over the training days of the
  step's own day type only (Monday-Friday or Saturday-Sunday), falling back to all days where
  its type has no other value. Los-loop's published range is March 1-7, 2012 (a Thursday to a
  Wednesday): its test windows are weekdays, and two of its five training days are a weekend.

It prints RMSE in mph per feature set and horizon, with the last value beside them. Pure Python,
about 5 minutes on one core. Used for BENCHMARKS.md, "T-GCN's Los-loop protocol reproduced".
"""
import csv
import datetime
import math
import sys

STEPS_PER_DAY = 288
TRAIN = range(0, 1395)
TEST = range(1612, 1993)
IN_LEN = 12
OUT_LEN = 12
LAGS = (0, 1, 2, 5, 11)
HORIZONS = (3, 6, 9, 12)


def load(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    # The first line names the sensors.
    return [[float(x) for x in r] for r in rows[1:] if r]


def solve(a, b):
    """Gauss-Jordan with partial pivoting on the normal equations."""
    n = len(b)
    m = [a[i][:] + [b[i]] for i in range(n)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                for k in range(c, n + 1):
                    m[r][k] -= f * m[c][k]
    return [m[i][n] / m[i][i] for i in range(n)]


def main():
    args = sys.argv[1:]
    start = None
    if args[:1] == ["--start"]:
        start = datetime.date.fromisoformat(args[1])
        args = args[2:]
    path = args[0] if args else "data/METR-LA/T-GCN_Los-loop/los_speed.csv"
    x = load(path)
    t, n = len(x), len(x[0])
    fit_end = TRAIN.stop + IN_LEN + OUT_LEN - 1

    def day_type(step):
        """0 on a weekday, 1 on a weekend (always 0 without --start)."""
        if start is None:
            return 0
        day = start + datetime.timedelta(days=step // STEPS_PER_DAY)
        return int(day.weekday() >= 5)

    # sums[type][slot][sensor]; type 2 pools both.
    sums = [[[0.0] * n for _ in range(STEPS_PER_DAY)] for _ in range(3)]
    counts = [[[0] * n for _ in range(STEPS_PER_DAY)] for _ in range(3)]
    for step in range(fit_end):
        for j in range(n):
            for kind in (day_type(step), 2):
                sums[kind][step % STEPS_PER_DAY][j] += x[step][j]
                counts[kind][step % STEPS_PER_DAY][j] += 1

    def ha(step, j, leave_out, by_type=False):
        slot = step % STEPS_PER_DAY
        # A fitted step is counted both under its day type and in the pool.
        fitted = leave_out and step < fit_end
        for kind in (day_type(step), 2) if by_type else (2,):
            s, c = sums[kind][slot][j], counts[kind][slot][j]
            if fitted:
                s, c = s - x[step][j], c - 1
            if c > 0:
                return s / c
        raise ValueError(f"sensor {j} has no other value at slot {slot}")

    def features(s, j, k, kind, training):
        last = s + IN_LEN - 1
        f = [1.0] + [x[last - lag][j] for lag in LAGS]
        if kind != "lags":
            loo = training and kind.endswith("out)")
            by_type = "day type" in kind
            f += [ha(last + 1 + k, j, loo, by_type), ha(last, j, loo, by_type)]
        return f

    print(f"{path}: {t} steps x {n} sensors; train windows {TRAIN.start}..{TRAIN.stop}, "
          f"test windows {TEST.start}..{TEST.stop}")
    kinds = ("lags", "lags+HA", "lags+HA (leave-one-day-out)")
    if start is not None:
        kinds += ("lags+HA by day type (leave-one-day-out)",)
    sq = {kind: [0.0] * OUT_LEN for kind in kinds}
    sq["last value"] = [0.0] * OUT_LEN
    for k in range(OUT_LEN):
        for s in TEST:
            for j in range(n):
                e = x[s + IN_LEN - 1][j] - x[s + IN_LEN + k][j]
                sq["last value"][k] += e * e
        for kind in kinds:
            d = len(features(0, 0, k, kind, True))
            a = [[0.0] * d for _ in range(d)]
            b = [0.0] * d
            for s in TRAIN:
                for j in range(n):
                    f = features(s, j, k, kind, True)
                    y = x[s + IN_LEN + k][j]
                    for p in range(d):
                        fp = f[p]
                        b[p] += fp * y
                        row = a[p]
                        for q in range(p, d):
                            row[q] += fp * f[q]
            for p in range(d):
                for q in range(p):
                    a[p][q] = a[q][p]
            w = solve(a, b)
            for s in TEST:
                for j in range(n):
                    f = features(s, j, k, kind, False)
                    e = sum(fi * wi for fi, wi in zip(f, w)) - x[s + IN_LEN + k][j]
                    sq[kind][k] += e * e
    cells = len(TEST) * n
    print("| features | " + " | ".join(f"RMSE {5 * h} min" for h in HORIZONS) + " |")
    print("|---|" + "---:|" * len(HORIZONS))
    for kind in ("last value",) + kinds:
        rmse = [math.sqrt(sum(sq[kind][:h]) / (h * cells)) for h in HORIZONS]
        print(f"| {kind} | " + " | ".join(f"{r:.3f}" for r in rmse) + " |")


if __name__ == "__main__":
    main()
