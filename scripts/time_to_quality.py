#!/usr/bin/env python3
"""Time to quality of an instructed search against random search, from a comparison's rows.

Usage: scripts/time_to_quality.py RESULTS.jsonl METHOD [--against random]

RESULTS is a file written by `ists baseline --seeds K` (`bench/results/search-*.jsonl`): one
row per method and seed, each with its `trajectory` (every evaluation's cumulative optimizer
`steps` and `seconds`, its `rung` and proxy `score`, lower is better). Two readings, both in
optimizer steps (the equal-compute unit; seconds measure the machine's load as well):

- **Per seed** (the rule `ists baseline` prints): the design the reference method (random)
  finally chose is its best at its highest rung; the first step at which it held a design that
  good at that rung is its time. METHOD's time is the first step at which it held a design at
  the same rung scoring no worse. The ratio is METHOD's time over the reference's; "never"
  where it never did. Lower is better; the issue's goal is <= 0.3.
- **Mean over seeds**: for each method, the best score held at one rung by each step (the
  steps at which any evaluation of either method ended), averaged over the paired seeds
  (infinite until every seed holds one). The rung is the one the reference's final design had
  on most seeds (the higher on a tie). The reference's mean at its last step is its final
  quality; the ratio is the first step at which METHOD's mean curve is no worse, over the
  first step at which the reference's own mean curve reached it. One seed's proxy noise moves
  this reading less than the per-seed one, where a single lucky 90-step run can decide a seed.
  `ists baseline` prints the same (`ists_actors::run::compare::mean_time_to_quality`).

Pure Python; prints a table per reading. Used for BENCHMARKS.md, "Search vs random search".
"""
import json
import math
import sys


def load(path):
    rows = {}
    with open(path) as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                if r.get("trajectory"):
                    rows[(r["method"], r["seed"])] = r
    return rows


def final_of(trajectory):
    """The chosen design: highest rung, then lowest score."""
    return min(trajectory, key=lambda e: (-e["rung"], e["score"]))


def first_holding(trajectory, rung, score):
    steps = [e["steps"] for e in trajectory if e["rung"] == rung and e["score"] <= score]
    return min(steps) if steps else None


def best_curve(trajectory, rung, grid):
    """The best score at `rung` held by each step of `grid` (inf before the first)."""
    events = sorted((e["steps"], e["score"]) for e in trajectory if e["rung"] == rung)
    out, best, i = [], math.inf, 0
    for s in grid:
        while i < len(events) and events[i][0] <= s:
            best = min(best, events[i][1])
            i += 1
        out.append(best)
    return out


def median(values):
    v = sorted(values)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def main():
    args = sys.argv[1:]
    against = "random"
    if "--against" in args:
        k = args.index("--against")
        against = args[k + 1]
        del args[k : k + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    path, method = args
    rows = load(path)
    seeds = sorted(s for (m, s) in rows if m == against and (method, s) in rows)
    if not seeds:
        sys.exit(f"{path}: no seed has both a `{against}` and a `{method}` row with a trajectory")
    print(f"{path}: {method} against {against}, {len(seeds)} paired seeds")
    print()
    print("| seed | reference final (rung, score) | reference's step | method's step | ratio |")
    print("|---:|---|---:|---:|---:|")
    ratios, never = [], 0
    for s in seeds:
        ref, ins = rows[(against, s)]["trajectory"], rows[(method, s)]["trajectory"]
        fin = final_of(ref)
        t_ref = first_holding(ref, fin["rung"], fin["score"])
        t_ins = first_holding(ins, fin["rung"], fin["score"])
        if t_ins is None:
            never += 1
            ratio = "never"
        else:
            ratios.append(t_ins / t_ref)
            ratio = f"{t_ins / t_ref:.2f}"
        print(f"| +{s} | {fin['rung']}, {fin['score']:.4f} | {t_ref} | {t_ins or '-'} | {ratio} |")
    within = sum(r <= 0.3 for r in ratios)
    med = median(ratios + [math.inf] * never)
    med_text = "never" if med is None or math.isinf(med) else f"{med:.2f}"
    print()
    print(
        f"per seed: reached on {len(ratios)} of {len(seeds)}; ratio <= 0.3 on {within}; "
        f"median over all seeds (never counted as last) {med_text}"
    )

    # Mean over seeds, at the rung the reference chose on most seeds.
    rungs = [final_of(rows[(against, s)]["trajectory"])["rung"] for s in seeds]
    rung = max(set(rungs), key=lambda r: (rungs.count(r), r))
    # The curves change only where some evaluation ends: those steps are the grid.
    grid = sorted(
        {e["steps"] for s in seeds for m in (against, method) for e in rows[(m, s)]["trajectory"]}
    )

    def mean_curve(m):
        curves = [best_curve(rows[(m, s)]["trajectory"], rung, grid) for s in seeds]
        return [sum(c[k] for c in curves) / len(curves) for k in range(len(grid))]

    ref_mean, ins_mean = mean_curve(against), mean_curve(method)
    target = ref_mean[-1]
    t_ref = next(grid[k] for k in range(len(grid)) if ref_mean[k] <= target)
    t_ins = next((grid[k] for k in range(len(grid)) if ins_mean[k] <= target), None)
    print()
    print(f"mean over seeds, rung {rung}: the best score held by each step")
    print()
    print(f"| step | {against} | {method} |")
    print("|---:|---:|---:|")
    shown = sorted({t_ref, t_ins or grid[-1], grid[-1]} | set(grid[:: max(1, len(grid) // 8)]))
    for k, s in enumerate(grid):
        if s in shown:
            print(f"| {s} | {ref_mean[k]:.4f} | {ins_mean[k]:.4f} |")
    print()
    if t_ins is None:
        print(f"mean over seeds: {method} never reached {against}'s final mean {target:.4f}")
    else:
        print(
            f"mean over seeds: {against}'s final mean {target:.4f}, first reached by itself at "
            f"step {t_ref} and by {method} at step {t_ins}: ratio {t_ins / t_ref:.2f}"
        )


if __name__ == "__main__":
    main()
