#!/usr/bin/env python3
"""What the LLM decided in each LLM-instructed search of a comparison's results file (`ists
baseline --methods llm-local ...`), from the rows' `llm` field; no score is printed:

  python3 scripts/llm_use.py bench/results/search-chickenpox-joint-llm.jsonl

Per method and seed: candidates evaluated, requests sent and those usable, candidates the
seeded offline instructor proposed instead (fallbacks) and duplicates replaced by their
nearest unexplored design (adjusted), the seconds spent waiting for the model, and the share of
candidates the model proposed as it gave them: (evaluated - fallbacks - adjusted) / evaluated.
A resumed search's counts are its last session's (`resumed` > 0 in the row): its share is then
left out of the totals.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import rows  # noqa: E402


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    by = rows(argv[1])
    methods = sorted(m for m, seeds in by.items() if any("llm" in r for r in seeds.values()))
    if not methods:
        sys.exit(f"{argv[1]}: no row has an `llm` field (no LLM-instructed method)")
    print("| method | seed | evaluated | requests | usable | fallbacks | adjusted | model s | the model's share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in methods:
        own = total = 0
        for seed, r in sorted(by[m].items()):
            u = r.get("llm")
            if u is None:
                continue
            n = r["evaluations"]
            mine = n - u["fallbacks"] - u["adjusted"]
            resumed = r.get("resumed", 0) > 0
            share = "(resumed)" if resumed else f"{mine / n:.0%}" if n else "-"
            if not resumed:
                own, total = own + mine, total + n
            print(f"| {m} | +{seed} | {n} | {u['requests']} | {u['usable_replies']} | "
                  f"{u['fallbacks']} | {u['adjusted']} | {u['llm_seconds']:.0f} | {share} |")
        if total:
            print(f"| {m} | all | {total} | | | | | | {own / total:.0%} |")


if __name__ == "__main__":
    main(sys.argv)
