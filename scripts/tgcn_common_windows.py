#!/usr/bin/env python3
"""Scores kept test forecasts of `ists protocol tgcn` on a common set of test windows.

A 12-step model is tested on the 381 windows that start at step 1612 or later and end inside
the series; a model of 3 steps out (T-GCN's 15-minute model) on 390, since its shorter windows
fit further in. To compare the two like for like, this scores any kept forecast file on the
first WINDOWS windows (the ones both have) at one horizon, RMSE and MAE in mph pooled over
steps 1..=H as the protocol pools them (`ists::metrics::tgcn`). Several files of the same
shape are averaged first (an ensemble, as `--ensemble` and `ists protocol combine` do).

A forecast file (`<results>.forecasts/*.f32`) is little-endian f32 of shape (windows, steps,
sensors); window i starts (its first input step) at TEST_START + i, and its step j forecasts
series step TEST_START + i + INPUT + j.

  python3 scripts/tgcn_common_windows.py --steps 3 --windows 381 A.f32 B.f32
  python3 scripts/tgcn_common_windows.py --steps 12 --windows 381 --horizon 3 C.f32
  python3 scripts/tgcn_common_windows.py --steps 3 A.f32 B.f32 C.f32:12 D.f32:12

A file given as PATH:STEPS has STEPS forecast steps instead of --steps, so models of different
output lengths can be averaged at a horizon both reach (each file weighs the same).

Pure Python (no numpy), about 10 s a file.
"""
import argparse
import math
import os
import struct
import sys

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("files", nargs="+", help="kept forecast files (.f32, or PATH:STEPS), averaged when several")
p.add_argument("--steps", type=int, required=True, help="forecast steps in a file (output_len) without :STEPS")
p.add_argument("--windows", type=int, default=381, help="score the first WINDOWS test windows")
p.add_argument("--horizon", type=int, default=3, help="pool steps 1..=H (3 = 15 minutes)")
p.add_argument("--input", type=int, default=12, help="input steps of a window")
p.add_argument("--test-start", type=int, default=1612, help="first test window's first step")
p.add_argument("--speeds", default="data/METR-LA/T-GCN_Los-loop/los_speed.csv")
a = p.parse_args()

rows = [l for l in open(a.speeds).read().split("\n") if l.strip()]
series = [list(map(float, l.split(","))) for l in rows[1:]]  # the first line names the sensors
nodes = len(series[0])
files = []
for spec in a.files:
    path, _, steps = spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "")
    files.append((path, int(steps) if steps else a.steps))
for path, steps in files:
    if a.horizon > steps:
        sys.exit(f"--horizon {a.horizon}: {path} forecasts only {steps} steps")
last = a.test_start + a.windows - 1 + a.input + a.horizon - 1
if last >= len(series):
    sys.exit(f"--windows {a.windows}: window targets reach step {last}, the series has {len(series)}")

# The mean forecast over the files, kept for steps 1..=H only: (window, step, sensor).
mean = [0.0] * (a.windows * a.horizon * nodes)
for path, steps in files:
    size = os.path.getsize(path)
    if size % (4 * steps * nodes):
        sys.exit(f"{path}: {size} bytes is not a whole number of ({steps} steps x {nodes} sensors) windows")
    have = size // (4 * steps * nodes)
    if have < a.windows:
        sys.exit(f"{path}: holds {have} windows, fewer than --windows {a.windows}")
    buf = open(path, "rb").read(4 * a.windows * steps * nodes)
    f = struct.unpack(f"<{len(buf) // 4}f", buf)
    for w in range(a.windows):
        for j in range(a.horizon):
            src = (w * steps + j) * nodes
            dst = (w * a.horizon + j) * nodes
            for k in range(nodes):
                mean[dst + k] += f[src + k] / len(files)

se = ae = 0.0
n = 0
for w in range(a.windows):
    for j in range(a.horizon):
        truth = series[a.test_start + w + a.input + j]
        base = (w * a.horizon + j) * nodes
        for k in range(nodes):
            d = mean[base + k] - truth[k]
            se += d * d
            ae += abs(d)
            n += 1
print(f"{len(files)} file(s), {a.windows} windows, steps 1..{a.horizon}: "
      f"RMSE {math.sqrt(se / n):.4f} MAE {ae / n:.4f}")
