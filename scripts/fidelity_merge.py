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

Every tau comes with a 95% percentile bootstrap interval over resamples of the designs (2,000,
seeded), as `ists fidelity` prints it; this script's stream of resamples is Python's, not the
study's, so the ends can differ from the study's in the second decimal. `--against NAME` also
prints, for every other proxy, the interval of tau(NAME) - tau(other) over the same paired
resamples: whether NAME ranks better than the other at all, or only on this sample of designs.
"""
import argparse
import json
import random
import sys

RESAMPLES = 2000
LEVEL = 0.95


def kendall(x, y):
    """Kendall's tau-b (as `ists::stats::kendall_tau`): pairs tied on both sides count for
    nothing, pairs tied on one side shrink that side's denominator. None when nothing ranks."""
    c = d = tx = ty = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                c += 1
            else:
                d += 1
    den = ((c + d + tx) * (c + d + ty)) ** 0.5
    return (c - d) / den if den > 0 else None


def quantile(v, q):
    at = q * (len(v) - 1)
    lo, hi = int(at), min(int(at) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (at - lo)


def resamples(n, seed=0):
    """The same index resamples for every statistic of one table (paired comparisons)."""
    rng = random.Random(seed)
    return [[rng.randrange(n) for _ in range(n)] for _ in range(RESAMPLES)]


def interval(stat, draws):
    """Percentile interval of `stat(indices)` over `draws`; None where it is undefined on half
    of them or more."""
    vals = sorted(v for v in (stat(idx) for idx in draws) if v is not None)
    if 2 * len(vals) <= len(draws):
        return None
    tail = (1 - LEVEL) / 2
    return quantile(vals, tail), quantile(vals, 1 - tail)


def span(iv):
    return f"[{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "-"


def tau_on(x, y):
    return lambda idx: kendall([x[i] for i in idx], [y[i] for i in idx])


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


def table(rows, title, min_seeds, against=None):
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
        a, b = [p[0]["val_mae"] for p in pairs], [p[1]["val_mae"] for p in pairs]
        print(f"  seed against seed ({len(two)} designs with two seeds): Kendall tau "
              f"{kendall(a, b):.3f} (95% interval {span(interval(tau_on(a, b), resamples(len(a))))})")
    train_s = [t["seconds"] for r in rows for t in r["truth"]]
    mean_train = sum(train_s) / len(train_s)
    print(f"  {'proxy':<14} {'n':>3} {'tau':>7} {'95% interval':>14} {'rho':>7} {'s/cand':>8} {'share':>7}")
    names = sorted({k for r in rows for k in r.get("proxy") or {}})
    # Proxies are scores to minimise in the same units as the truth (the zero-cost ones are
    # negated by `ists fidelity` so that lower is better too): agreement is a positive tau.
    # Paired comparisons need every proxy on the same designs: those with all of them.
    full = [i for i, r in enumerate(rows) if all(k in (r.get("proxy") or {}) for k in names)]
    draws = resamples(len(full))
    scores = {k: [rows[i]["proxy"][k]["score"] for i in full] for k in names}
    common = [truth[i] for i in full]
    for name in names:
        have = [(r["proxy"][name], t) for r, t in zip(rows, truth) if name in r.get("proxy", {})]
        if len(have) < 3:
            continue
        score = [p["score"] for p, _ in have]
        t = [t for _, t in have]
        secs = sum(p["seconds"] for p, _ in have) / len(have)
        iv = interval(tau_on(score, t), resamples(len(score)))
        print(f"  {name:<14} {len(have):>3} {kendall(score, t):>7.3f} {span(iv):>14} "
              f"{spearman(score, t):>7.3f} {secs:>8.1f} {100 * secs / mean_train:>6.1f}%")
    if against is None or len(full) < 3:
        return
    if against not in names:
        sys.exit(f"--against {against}: no such proxy (have {', '.join(names)})")
    print(f"  tau({against}) - tau(other) on the {len(full)} designs with every proxy, "
          f"95% interval over paired resamples:")
    mine = tau_on(scores[against], common)
    for name in names:
        if name == against:
            continue
        theirs = tau_on(scores[name], common)

        def diff(idx, theirs=theirs):
            a, b = mine(idx), theirs(idx)
            return None if a is None or b is None else a - b

        point = diff(list(range(len(full))))
        print(f"    - {name:<14} {point:+.3f}  {span(interval(diff, draws))}")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("files", nargs="+", help="fidelity results files of one study")
    ap.add_argument("--tier", type=float, default=1.0,
                    help="the lowest learning-rate factor of the tier table (default 1)")
    ap.add_argument("--min-seeds", type=int, default=1,
                    help="leave out designs with fewer ground-truth seeds (default 1)")
    ap.add_argument("--out", help="write the merged rows here")
    ap.add_argument("--against", metavar="NAME",
                    help="also compare this proxy's tau with every other's (paired bootstrap)")
    args = ap.parse_args(argv)
    rows = merge(args.files)
    table(rows, f"{len(args.files)} files merged", args.min_seeds, args.against)
    if args.min_seeds > 1:
        rows = [r for r in rows if len(r.get("truth") or []) >= args.min_seeds]
    tier = [r for r in rows if lr_factor(r) >= args.tier]
    if len(tier) < len(rows):
        print()
        table(tier, f"learning-rate factor >= {args.tier:g}", args.min_seeds, args.against)
    if args.out:
        with open(args.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
        print(f"\n{len(rows)} rows written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
