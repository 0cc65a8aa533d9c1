#!/usr/bin/env python3
"""Keeps the verified prefix of a rerun search's journal for `ists baseline --anytime`.

`--anytime F` reads a finished search's journal only up to the evaluations that end within
F x random search's steps under the same seed. When a journal was lost, the search can be run
again, but a committed row whose search was killed and resumed cannot be repeated whole (a
resumed search does not continue exactly as an uninterrupted one). The part the reading uses
can be: this script checks that the rerun's evaluations repeat the committed row's
`trajectory` (steps, rung and score of each evaluation, in order, to the last digit) through
the first evaluation past the cut, and only then writes those evaluations as the kept
journal, `<results>.journals/<method>-seed<k>.jsonl`:

    python3 scripts/journal_prefix.py RESULTS METHOD SEED RERUN_JOURNAL [--fraction 0.3]

Exit 0 when the prefix repeats and was kept, 1 when it does not repeat or the rerun has not
reached past the cut yet (nothing is written), 2 on unreadable input.
"""

import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("method")
    ap.add_argument("seed", type=int)
    ap.add_argument("journal")
    ap.add_argument("--fraction", type=float, default=0.3)
    a = ap.parse_args()
    if not 0.0 < a.fraction <= 1.0:
        sys.exit(f"--fraction {a.fraction}: a share of random search's steps, in (0, 1]")
    try:
        rows = [json.loads(l) for l in open(a.results) if l.strip()]
        journal = [json.loads(l) for l in open(a.journal) if l.strip()]
    except (OSError, ValueError) as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    row = next((r for r in rows if r["method"] == a.method and r["seed"] == a.seed), None)
    ref = next((r for r in rows if r["method"] == "random" and r["seed"] == a.seed), None)
    if row is None or ref is None:
        sys.exit(f"{a.results}: no {a.method} or random row for seed +{a.seed}")
    limit = int(ref["eval_steps"] * a.fraction)
    # The committed evaluations through the first one that ends past the cut.
    want = []
    for t in row["trajectory"]:
        want.append(t)
        if t["steps"] > limit:
            break
    steps = 0
    for i, t in enumerate(want):
        if i >= len(journal):
            print(f"{a.journal}: {len(journal)} evaluations, {len(want)} needed (past {limit} steps)")
            sys.exit(1)
        e = journal[i]
        steps += e["steps"]
        got = (steps, e.get("rung"), e.get("score"))
        if got != (t["steps"], t["rung"], t["score"]):
            print(f"evaluation {i}: the rerun has (steps, rung, score) {got}, the row {(t['steps'], t['rung'], t['score'])}")
            sys.exit(1)
    out = os.path.join(a.results + ".journals", f"{a.method}-seed{a.seed}.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    with open(a.journal) as f:
        lines = [l for l in f if l.strip()][: len(want)]
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.replace(tmp, out)
    print(f"{a.method} seed +{a.seed}: {len(want)} evaluations repeat the row through {want[-1]['steps']} steps (cut {limit}); kept as {out}")


if __name__ == "__main__":
    main()
