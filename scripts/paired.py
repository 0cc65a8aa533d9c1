#!/usr/bin/env python3
"""Pairs two methods of a comparison's results file by seed (`ists baseline --results`):
test MAE mean (sd) of each, wins/ties/losses of the first, and the one-sided exact Wilcoxon
signed-rank p-value that the first is better (lower), as `ists baseline` prints against random
search, for any two rows' methods (`offline-prior@0.3` against `random@0.3`, say).

  python3 scripts/paired.py bench/results/search-chickenpox-joint-prior-v34.jsonl offline-prior@0.3 random@0.3

With --table (anywhere after the script's name) the line follows the per-seed table it is
computed from: both methods' test MAE on the seeds both have, and the first's win/tie/loss.

Either method may be written OTHER_FILE:METHOD to take its rows from another results file of
the same comparison (a whole search given 0.3x of the budget against one given all of it, say):

  python3 scripts/paired.py bench/results/search-chickenpox-joint-prior-fresh.jsonl \
    bench/results/search-chickenpox-joint-prior-third.jsonl:offline-prior random

Ties are equal test MAEs; as in `ists::stats`, tied pairs are left out of the test.
"""
import itertools
import json
import math
import statistics
import sys

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


def json_lines(path, what="results file"):
    """The JSON lines of `path`; exits naming the file (`what` it is) if it cannot be read."""
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        sys.exit(f"{path}: cannot read the {what} ({e.strerror})")
    return [json.loads(line) for line in lines if line.strip()]


def rows(path):
    """{method: {seed: row}} from a comparison's results file."""
    by = {}
    for r in json_lines(path):
        by.setdefault(r["method"], {})[r["seed"]] = r
    return by


def rows_by_method(path):
    """{method: {seed: test MAE}} from a comparison's results file."""
    return {m: {seed: r["test_mae"] for seed, r in by_seed.items()}
            for m, by_seed in rows(path).items()}


def pair(path, method, against, seeds=None):
    """`method` against `against` in the results file `path`: [`pair_by`] on its rows."""
    return pair_by(rows_by_method(path), path, method, against, seeds)


def pair_by(by, path, method, against, seeds=None):
    """`method` against `against` over the seeds both have in `by` ({method: {seed: test
    MAE}}, read from `path`), or those of `seeds` both have: a dict with the seeds, both means
    and sds, wins/ties/losses of `method` and the one-sided Wilcoxon p that `method` is lower.
    Exits naming the file when either method is missing."""
    for m in (method, against):
        if m not in by:
            sys.exit(f"{path}: no rows of method '{m}' (it has: {', '.join(sorted(by))})")
    common = set(by[method]) & set(by[against])
    if seeds is not None:
        common &= set(seeds)
    common = sorted(common)
    if not common:
        sys.exit(f"{path}: no seed has both '{method}' and '{against}'")
    x = [by[method][s] for s in common]
    y = [by[against][s] for s in common]
    d = [a - b for a, b in zip(x, y) if a != b]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    return {
        "seeds": common,
        "mean": statistics.mean(x), "sd": sd(x),
        "against_mean": statistics.mean(y), "against_sd": sd(y),
        "wins": sum(v < 0 for v in d), "losses": sum(v > 0 for v in d),
        "ties": len(common) - len(d), "p": wilcoxon_less(d),
    }


def seed_table(by, method, against, seeds):
    """Markdown lines: test MAE per seed of both methods, then `method`'s win/tie/loss on each
    (a tie is an equal test MAE, as in the test)."""
    outcome = lambda a, b: "tie" if a == b else ("win" if a < b else "loss")
    lines = ["| seed | " + " | ".join(f"+{s}" for s in seeds) + " |",
             "|---|" + "---:|" * len(seeds)]
    for m in (method, against):
        lines.append(f"| {m} | " + " | ".join(f"{by[m][s]:.4f}" for s in seeds) + " |")
    lines.append(f"| {method} vs {against} | "
                 + " | ".join(outcome(by[method][s], by[against][s]) for s in seeds) + " |")
    return lines


if __name__ == "__main__":
    table = "--table" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--table"]
    if len(args) != 3:
        sys.exit(__doc__)
    path, method, against = args
    by = rows_by_method(path)
    for m in (method, against):
        if ":" in m:
            other, name = m.rsplit(":", 1)
            # Not `rows`: at module level that name would replace the reader above.
            theirs = rows_by_method(other)
            if name not in theirs:
                sys.exit(f"{other}: no rows of method '{name}' (it has: {', '.join(sorted(theirs))})")
            by[m] = theirs[name]
    r = pair_by(by, path, method, against)
    if table:
        print("\n".join(seed_table(by, method, against, r["seeds"])) + "\n")
    print(f"{method} against {against}, {len(r['seeds'])} paired seeds: "
          f"{r['mean']:.4f} ({r['sd']:.4f}) against {r['against_mean']:.4f} ({r['against_sd']:.4f}); "
          f"wins/ties/losses {r['wins']}/{r['ties']}/{r['losses']}; one-sided Wilcoxon p = {r['p']:.3f}")
