#!/usr/bin/env python3
"""Pairs two methods of a comparison's results file by seed (`ists baseline --results`):
test MAE mean (sd) of each, wins/ties/losses of the first, and the one-sided exact Wilcoxon
signed-rank p-value that the first is better (lower), as `ists baseline` prints against random
search, for any two rows' methods (`offline-prior@0.3` against `random@0.3`, say).

  python3 scripts/paired.py bench/results/search-chickenpox-joint-prior-v34.jsonl offline-prior@0.3 random@0.3

Ties are equal test MAEs; as in `ists::stats`, tied pairs are left out of the test.
"""
import itertools
import json
import math
import statistics
import sys

if len(sys.argv) != 4:
    sys.exit(__doc__)
path, method, against = sys.argv[1:]
by = {}
for line in open(path):
    if line.strip():
        r = json.loads(line)
        by.setdefault(r["method"], {})[r["seed"]] = r["test_mae"]
for m in (method, against):
    if m not in by:
        sys.exit(f"{path}: no rows of method '{m}' (it has: {', '.join(sorted(by))})")
seeds = sorted(set(by[method]) & set(by[against]))
if not seeds:
    sys.exit(f"{path}: no seed has both '{method}' and '{against}'")
x = [by[method][s] for s in seeds]
y = [by[against][s] for s in seeds]
d = [a - b for a, b in zip(x, y) if a != b]
wins = sum(v < 0 for v in d)
losses = sum(v > 0 for v in d)
ties = len(seeds) - len(d)


def wilcoxon_less(d):
    """One-sided exact p-value that the differences are below zero (average ranks for ties)."""
    n = len(d)
    if n == 0:
        return 1.0
    order = sorted(range(n), key=lambda i: abs(d[i]))
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(d[order[j + 1]]) == abs(d[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    w = sum(r for r, v in zip(ranks, d) if v < 0)
    if n > 20:  # normal approximation, with continuity correction
        mu = n * (n + 1) / 4
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        return 0.5 * math.erfc((w - mu - 0.5) / sd / math.sqrt(2))
    count = sum(1 for signs in itertools.product((0, 1), repeat=n)
                if sum(r for r, s in zip(ranks, signs) if s) >= w - 1e-9)
    return count / 2 ** n


sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
print(f"{method} against {against}, {len(seeds)} paired seeds: "
      f"{statistics.mean(x):.4f} ({sd(x):.4f}) against {statistics.mean(y):.4f} ({sd(y):.4f}); "
      f"wins/ties/losses {wins}/{ties}/{losses}; one-sided Wilcoxon p = {wilcoxon_less(d):.3f}")
