#!/usr/bin/env python3
"""How many ground-truth seeds a fidelity study needs before its ranking repeats.

Reads `bench/results/fidelity-<data>.jsonl` (one line per design, `truth`: one entry per
training seed) and splits the spread of the ground truth's validation MAE into a between-design
part (what a ranking can see) and a seed part (noise), by one-way analysis of variance over the
designs that have at least k seeds (their first k), once for each seed count k in the file.
Under a normal model, two independent means of k seeds then correlate at
rho_k = between / (between + seed / k), and their Kendall tau is (2 / pi) * arcsin(rho_k).
That is a *forecast*, printed next to what the file measures (the tau between single seeds,
and between the means of disjoint halves of the seeds), so the model can be checked where
both exist.

    python3 scripts/seed_reliability.py bench/results/fidelity-chickenpox-joint.jsonl [...]

Pure Python (no numpy), so it runs wherever the results are read.
"""
import itertools
import json
import math
import sys

# Kendall tau-a (ties count for neither side), shared with the prior-transfer check beside it.
from prior_transfer import tau as kendall


def study(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    seeds = [[t["val_mae"] for t in sorted(r["truth"], key=lambda t: t["seed"])] for r in rows]
    # One analysis per seed count k that some design has: every design with at least k seeds,
    # its first k (by seed number). A study grown from 4 to 8 seeds a design is then read both
    # on all its designs at 4 seeds and on those that already have 8.
    ks = sorted({len(v) for v in seeds if len(v) >= 2})
    print(f"{path}: {len(rows)} designs")
    if not ks:
        print("  no design has two or more seeds")
    for k in ks:
        analyse([v[:k] for v in seeds if len(v) >= k], k)


def analyse(data, k):
    print(f"  the {len(data)} designs with at least {k} seeds (the first {k} of each):")
    if len(data) < 3:
        print("    too few designs")
        return
    n = len(data)
    means = [sum(d) / k for d in data]
    grand = sum(means) / n
    seed_var = sum(sum((x - m) ** 2 for x in d) for d, m in zip(data, means)) / (n * (k - 1))
    means_var = sum((m - grand) ** 2 for m in means) / (n - 1)
    between = means_var - seed_var / k
    print(f"    seed sd {math.sqrt(seed_var):.5f}, between-design sd "
          f"{math.sqrt(between) if between > 0 else 0.0:.5f}")
    measured = {1: [kendall([d[a] for d in data], [d[b] for d in data])
                    for a, b in itertools.combinations(range(k), 2)]}
    for half in range(2, k // 2 + 1):
        taus = []
        for first in itertools.combinations(range(k), half):
            rest = [i for i in range(k) if i not in first]
            for second in itertools.combinations(rest, half):
                if min(first) < min(second):  # each unordered split once
                    taus.append(kendall([sum(d[i] for i in first) for d in data],
                                        [sum(d[i] for i in second) for d in data]))
        measured[half] = taus
    print("    seeds per mean | forecast tau between two means | measured (mean, range)")
    for m in (1, 2, 3, 4, 6, 8):
        if between <= 0:
            forecast = "none (no between-design variance)"
        else:
            rho = between / (between + seed_var / m)
            forecast = f"{2 / math.pi * math.asin(rho):.3f}"
        got = measured.get(m)
        seen = (f"{sum(got) / len(got):.3f} ({min(got):.3f}..{max(got):.3f}, {len(got)} splits)"
                if got else "-")
        print(f"    {m:>14} | {forecast:>30} | {seen}")


def main(paths):
    if not paths:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: seed_reliability.py FIDELITY.jsonl [...]", file=sys.stderr)
        return 2
    for p in paths:
        study(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
