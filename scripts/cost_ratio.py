#!/usr/bin/env python3
"""The compute of searches given part of the budget against random search given all of it,
per seed, from two results files of one comparison (`ists baseline --results`) and the
journals kept beside them (`<results>.journals/<method>-seed<k>.jsonl`):

  python3 scripts/cost_ratio.py WHOLE.jsonl PART.jsonl

For each method of PART (offline-prior, random), against `random` of WHOLE on the seeds both
have: optimizer steps (the comparisons' equal-compute unit), evaluation seconds (the last
point of each row's trajectory: the evaluations' own times summed, which the load on the
machine moves) and parameter-steps (each evaluation's parameter count times its optimizer
steps, summed over the journal: a measure no load changes). Medians and ranges of the ratios.
Given one file twice, it compares the methods at the same budget (what "equal steps" cost each
in seconds).
"""
import os
import statistics as st
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import json_lines, rows  # noqa: E402


def param_steps(path):
    """Sum over a journal's evaluations of parameters x optimizer steps."""
    return sum(j.get("params", 0) * j.get("steps", 0) for j in json_lines(path, "journal"))


def spread(v):
    return f"median {st.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    whole_path, part_path = sys.argv[1:]
    whole, part = rows(whole_path), rows(part_path)
    if "random" not in whole:
        sys.exit(f"{whole_path}: no rows of method 'random'")
    for m in ("offline-prior", "random"):
        if m not in part:
            continue
        seeds = sorted(set(part[m]) & set(whole["random"]))
        if not seeds:
            sys.exit(f"no seed has both {part_path}:{m} and {whole_path}:random")
        ref = [whole["random"][s] for s in seeds]
        rows = [part[m][s] for s in seeds]
        steps = [r["eval_steps"] / w["eval_steps"] for r, w in zip(rows, ref)]
        secs = [r["trajectory"][-1]["seconds"] / w["trajectory"][-1]["seconds"] for r, w in zip(rows, ref)]
        ps = [param_steps(f"{part_path}.journals/{m}-seed{s}.jsonl")
              / param_steps(f"{whole_path}.journals/random-seed{s}.jsonl") for s in seeds]
        print(f"{m} of {part_path} against random of {whole_path}, {len(seeds)} seeds: "
              f"optimizer steps {spread(steps)}; evaluation seconds {spread(secs)}; "
              f"parameter-steps {spread(ps)}")
