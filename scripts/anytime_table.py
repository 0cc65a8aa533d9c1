#!/usr/bin/env python3
"""The anytime reading of a comparison (`ists baseline --anytime F`), as BENCHMARKS.md states
it ("Time to quality judged by full training"): per seed, the test MAE of each search's final
model and of the design it held at the cut, the steps each cut held, then readings 1-3 and the
goal's rule, all from the rows.

  python3 scripts/anytime_table.py bench/results/search-metr-la-joint-prior.jsonl --seeds 8-15

Options: --method offline-prior (the instructed search), --reference random, --cut 0.3.
A seed missing a row shows '-' in the table; the readings need every seed's four rows and say
how many are in until then, so that no reading is made on part of the seeds.

Readings (test MAE, lower is better, paired by seed):
1. METHOD@CUT against REFERENCE's final: "as good as" = mean no higher and wins >= losses.
2. REFERENCE@CUT against REFERENCE's final, by the same rule: the control.
3. METHOD@CUT against REFERENCE@CUT: one-sided Wilcoxon.
The goal (<= CUT x the reference's time) is met on the data set only if reading 1 holds and
reading 3 has p < 0.1.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import pair_by  # noqa: E402


def seed_range(text):
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("results")
ap.add_argument("--seeds", type=seed_range, required=True, help="e.g. 8-15")
ap.add_argument("--method", default="offline-prior")
ap.add_argument("--reference", default="random")
ap.add_argument("--cut", default="0.3")
a = ap.parse_args()

rows = {}
for n, line in enumerate(open(a.results), 1):
    if line.strip():
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"{a.results}:{n}: not JSON: {e}")
        rows[(r["method"], r["seed"])] = r
m_cut, r_cut = f"{a.method}@{a.cut}", f"{a.reference}@{a.cut}"
order = [a.reference, r_cut, a.method, m_cut]

print("| seed | " + " | ".join(f"+{k}" for k in a.seeds) + " |")
print("|---|" + "---:|" * len(a.seeds))
for m in order:
    cells = [f"{rows[(m, k)]['test_mae']:.4f}" if (m, k) in rows else "-" for k in a.seeds]
    print(f"| {m} | " + " | ".join(cells) + " |")
for m in (m_cut, r_cut):
    cells = [str(rows[(m, k)]["eval_steps"]) if (m, k) in rows else "-" for k in a.seeds]
    print(f"| steps held, {m} | " + " | ".join(cells) + " |")

complete = [k for k in a.seeds if all((m, k) in rows for m in order)]
print()
if len(complete) < len(a.seeds):
    missing = sum((m, k) not in rows for m in order for k in a.seeds)
    print(f"{len(complete)} of {len(a.seeds)} seeds have all four rows ({missing} rows missing): "
          "no reading is made until every seed is in.")
    sys.exit(0)

print("| reading | A | B | test MAE, A (sd) | B (sd) | A's wins/ties/losses | one-sided Wilcoxon p | rule |")
print("|---|---|---|---:|---:|---|---:|---|")
by = {}
for (m, k), r in rows.items():
    by.setdefault(m, {})[k] = r["test_mae"]
verdicts = {}
for n, (x, y) in enumerate([(m_cut, a.reference), (r_cut, a.reference), (m_cut, r_cut)], 1):
    p = pair_by(by, a.results, x, y, a.seeds)
    if n < 3:
        ok = p["mean"] <= p["against_mean"] and p["wins"] >= p["losses"]
        rule = "as good as: " + ("yes" if ok else "no")
    else:
        ok = p["p"] < 0.1
        rule = "p < 0.1: " + ("yes" if ok else "no")
    verdicts[n] = ok
    print(f"| {n} | {x} | {y} | {p['mean']:.4f} ({p['sd']:.4f}) | {p['against_mean']:.4f} "
          f"({p['against_sd']:.4f}) | {p['wins']}/{p['ties']}/{p['losses']} | {p['p']:.3f} | {rule} |")
print()
print(f"goal (<= {a.cut}x the reference's time, by this reading): "
      + ("met" if verdicts[1] and verdicts[3] else "not met")
      + f" (reading 1 {'holds' if verdicts[1] else 'does not hold'}; reading 3 "
      + ("has" if verdicts[3] else "does not have") + " p < 0.1)")
