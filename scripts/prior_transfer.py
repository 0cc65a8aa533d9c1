#!/usr/bin/env python3
"""How well a prior from some searches' banks ranks other searches' candidates.

Usage: scripts/prior_transfer.py 'PRIOR_GLOB' 'TARGET_GLOB'

Each glob names journals (journal.jsonl of a run, or copies such as bench/priors/*.jsonl). The
prior is fitted as ists::prior::Prior fits it (each bank ranked on its own, highest rung first,
then score, failed last; a design's value is its position as a share; a main-effects surrogate
of Arch::choice_features with one pseudo-design of shrinkage), re-implemented here in pure
Python. For each target journal it prints Kendall's tau between the prior's estimate and the
candidates' proxy scores at rung 0 (the 30-step proxy), so the figure says how much of a new
task's first ranking the other tasks already knew. Used for BENCHMARKS.md, "Prior knowledge
from another task".
"""
import glob
import itertools
import json
import sys


def features(arch):
    f = set()
    for e in arch["edges"]:
        if e["op"] == "zero":
            continue
        label = e["op"]
        if e.get("spatial"):
            label += f"({e['spatial']},{e['temporal']})"
        f.add(f"{e['from']}>{e['to']}:{label}")
        for kind in (e["op"], e.get("spatial"), e.get("temporal")):
            if kind:
                f.add("uses:" + kind)
    for k, v in (arch.get("hyper") or {}).items():
        f.add(f"{k}={v}")
    return f


def bank(path):
    """The journal's designs at their highest rung, in the memory bank's order, as shares."""
    best = {}
    for line in open(path):
        if not line.strip():
            continue
        e = json.loads(line)
        if e["hash"] not in best or e.get("rung", 0) > best[e["hash"]].get("rung", 0):
            best[e["hash"]] = e
    scored = sorted(
        (e for e in best.values() if e.get("score") is not None),
        key=lambda e: (-e.get("rung", 0), e["score"], e["id"]),
    )
    last = max(len(scored) - 1, 1)
    out = [(e["arch"], i / last) for i, e in enumerate(scored)]
    out += [(e["arch"], 1.0) for e in best.values() if e.get("score") is None]
    return out


def fit(designs):
    mean = sum(v for _, v in designs) / len(designs)
    sums = {}
    for a, v in designs:
        for f in features(a):
            s = sums.setdefault(f, [0.0, 0.0])
            s[0] += v
            s[1] += 1
    return {f: (s + mean) / (n + 1) - mean for f, (s, n) in sums.items()}


def tau(x, y):
    c = d = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        p = (x[i] - x[j]) * (y[i] - y[j])
        c += p > 0
        d += p < 0
    n = len(x)
    return (c - d) / (n * (n - 1) / 2)


def journals(pattern):
    paths = sorted(glob.glob(pattern))
    return [p if p.endswith(".jsonl") else p + "/journal.jsonl" for p in paths]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    prior_paths, target_paths = journals(sys.argv[1]), journals(sys.argv[2])
    if not prior_paths or not target_paths:
        sys.exit("no journal matches one of the globs")
    worth = fit([d for p in prior_paths for d in bank(p)])
    taus = []
    for path in target_paths:
        rung0 = [json.loads(l) for l in open(path) if l.strip()]
        rung0 = [e for e in rung0 if e.get("rung", 0) == 0 and e.get("score") is not None]
        est = [sum(worth.get(f, 0.0) for f in features(e["arch"])) for e in rung0]
        t = tau(est, [e["score"] for e in rung0])
        taus.append(t)
        print(f"{path}: {len(rung0)} candidates, tau {t:.3f}")
    print(
        f"prior: {len(prior_paths)} banks; mean tau {sum(taus) / len(taus):.3f} "
        f"({min(taus):.3f}-{max(taus):.3f}) over {len(taus)} target searches"
    )


if __name__ == "__main__":
    main()
