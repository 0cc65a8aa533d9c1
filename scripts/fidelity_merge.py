#!/usr/bin/env python3
"""Read the shards of one fidelity study together, before the study's own merge can run.

`ists fidelity --shard i/n` writes each shard to its own file, and its closing table covers that
file only. The final merge (`ists fidelity` without `--shard`, `--take` of the other files) also
measures every design still missing, so it can only run once all shards are done. This script
reads the files as they stand, keeps one row per design (the one with more ground-truth seeds,
then more proxies; rows are identical designs by `hash`) and prints what the study's table will
say: Kendall tau and Spearman rho of each proxy against the mean ground truth, seconds per
candidate and their share of one ground-truth training, the seed-against-seed ceiling, and the
same taus within the designs whose learning-rate factor (`hyper.lr_scale`, 1 where a design has
none) is at least `--tier` (default 1): the region a search ends up comparing.

    python3 scripts/fidelity_merge.py bench/results/fidelity-metr-la-joint*.jsonl [--min-seeds 2] [--out merged.jsonl]

A design whose ground truth is still under way (`ists fidelity` saves after each seed) counts
with the seeds it has; `--min-seeds 2` leaves it out, as the finished study will not. `--out`
writes the merged rows (for `scripts/seed_reliability.py`). Pure Python (no numpy).
"""
import argparse
import itertools
import json
import sys

# Kendall tau-a (ties count for neither side), shared with the scripts beside it.
from prior_transfer import tau as kendall


def ranks(xs):
    """Ranks from 1, ties given their mean rank (as Spearman's rho needs)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5 if va > 0 and vb > 0 else float("nan")


def merge(paths):
    """One row per hash: the one with more truth seeds, then more proxies (the first on a tie)."""
    best = {}
    for path in paths:
        for n, line in enumerate(open(path), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not a JSON line: {e}")
            key = (len(row.get("truth") or []), len(row.get("proxy") or {}))
            old = best.get(row["hash"])
            if old is None or key > (len(old.get("truth") or []), len(old.get("proxy") or {})):
                best[row["hash"]] = row
    return list(best.values())


def lr_factor(row):
    return float((row["arch"].get("hyper") or {}).get("lr_scale", 1.0))


def table(rows, title, min_seeds):
    # The ground truth is the mean of a design's seeds; designs without one are left out, as
    # `ists fidelity` leaves them out of its table.
    rows = [r for r in rows if len(r.get("truth") or []) >= max(min_seeds, 1)]
    print(f"{title}: {len(rows)} designs with a ground truth")
    if len(rows) < 3:
        print("  too few designs")
        return
    truth = [sum(t["val_mae"] for t in r["truth"]) / len(r["truth"]) for r in rows]
    print(f"  ground truth {min(truth):.4f}-{max(truth):.4f}")
    two = [r for r in rows if len(r["truth"]) >= 2]
    if len(two) >= 3:
        pairs = [sorted(r["truth"], key=lambda t: t["seed"])[:2] for r in two]
        print(f"  seed against seed ({len(two)} designs with two seeds): Kendall tau "
              f"{kendall([p[0]['val_mae'] for p in pairs], [p[1]['val_mae'] for p in pairs]):.3f}")
    train_s = [t["seconds"] for r in rows for t in r["truth"]]
    mean_train = sum(train_s) / len(train_s)
    print(f"  {'proxy':<14} {'n':>3} {'tau':>7} {'rho':>7} {'s/cand':>8} {'share':>7}")
    names = sorted({k for r in rows for k in r.get("proxy") or {}})
    for name in names:
        have = [(r["proxy"][name], t) for r, t in zip(rows, truth) if name in r.get("proxy", {})]
        if len(have) < 3:
            continue
        # Proxies are scores to minimise in the same units as the truth (the zero-cost ones are
        # negated by `ists fidelity` so that lower is better too): agreement is a positive tau.
        score = [p["score"] for p, _ in have]
        t = [t for _, t in have]
        secs = sum(p["seconds"] for p, _ in have) / len(have)
        print(f"  {name:<14} {len(have):>3} {kendall(score, t):>7.3f} {spearman(score, t):>7.3f} "
              f"{secs:>8.1f} {100 * secs / mean_train:>6.1f}%")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("files", nargs="+", help="fidelity results files of one study")
    ap.add_argument("--tier", type=float, default=1.0,
                    help="the lowest learning-rate factor of the tier table (default 1)")
    ap.add_argument("--min-seeds", type=int, default=1,
                    help="leave out designs with fewer ground-truth seeds (default 1)")
    ap.add_argument("--out", help="write the merged rows here")
    args = ap.parse_args(argv)
    rows = merge(args.files)
    table(rows, f"{len(args.files)} files merged", args.min_seeds)
    if args.min_seeds > 1:
        rows = [r for r in rows if len(r.get("truth") or []) >= args.min_seeds]
    tier = [r for r in rows if lr_factor(r) >= args.tier]
    if len(tier) < len(rows):
        print()
        table(tier, f"learning-rate factor >= {args.tier:g}", args.min_seeds)
    if args.out:
        with open(args.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
        print(f"\n{len(rows)} rows written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
