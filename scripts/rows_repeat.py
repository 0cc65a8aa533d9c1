#!/usr/bin/env python3
"""Does a retrained copy of a protocol results file repeat the committed rows?

Kept forecasts (`<results>.forecasts/`) are lost with a machine; the rows are committed. A seed
trained again on a copy of the file may stand in for the lost forecast only if its rows repeat
the committed ones in every field (CPU training is deterministic for one build of the same
code). This script makes that check, instead of reading the rows by eye:

    python3 scripts/rows_repeat.py RETRAINED COMMITTED [--seeds 0,1,2]

Every row of RETRAINED whose model is a trained one (it has a `chosen` field) and whose seed is
in --seeds (all by default) is looked up in COMMITTED by (model, seed, horizon_min) and compared
field by field, floats to the last bit. It prints one line per row and exits 1 when any row is
missing from COMMITTED or differs, 2 on unreadable input, 0 when every row repeats.
"""

import argparse
import json
import sys


def rows(path):
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
                key = (r["model"], r["seed"], r["horizon_min"])
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"{path}:{n}: not a protocol row ({e})")
            out[key] = r
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("retrained")
    ap.add_argument("committed")
    ap.add_argument("--seeds", help="comma-separated seeds to check (default: all)")
    a = ap.parse_args()
    try:
        seeds = None if a.seeds is None else {int(s) for s in a.seeds.split(",")}
    except ValueError:
        sys.exit(f"--seeds: expected comma-separated integers, got {a.seeds!r}")
    try:
        new, old = rows(a.retrained), rows(a.committed)
    except OSError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    checked = bad = 0
    for key, r in sorted(new.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        model, seed, h = key
        if "chosen" not in r or (seeds is not None and seed not in seeds):
            continue
        checked += 1
        c = old.get(key)
        if c is None:
            bad += 1
            print(f"MISSING  {model} seed +{seed} {h} min: no such row in {a.committed}")
            continue
        diff = sorted(k for k in set(r) | set(c) if r.get(k) != c.get(k))
        if diff:
            bad += 1
            shown = ", ".join(f"{k}: {r.get(k)!r} vs {c.get(k)!r}" for k in diff)
            print(f"DIFFERS  {model} seed +{seed} {h} min: {shown}")
        else:
            print(
                f"repeats  {model} seed +{seed} {h} min: rmse {r['rmse']!r}, "
                f"best epoch {r['chosen'].get('best_epoch')}"
            )
    if checked == 0:
        print("no trained rows to check", file=sys.stderr)
        sys.exit(1)
    print(f"{checked - bad} of {checked} rows repeat")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
