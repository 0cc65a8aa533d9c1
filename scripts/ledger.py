#!/usr/bin/env python3
"""Every paired comparison of the search-quality issue that BENCHMARKS.md reports, recomputed
from the committed rows (`bench/results/search-*.jsonl`), as one markdown table:

  python3 scripts/ledger.py            # prints the table
  python3 scripts/ledger.py --write    # writes it into README.md between its ledger markers
  python3 scripts/ledger.py --check    # exits 1 if README.md's table is not what the rows
                                       # give, a listed file or method has no rows, or a
                                       # listed BENCHMARKS.md section no longer exists

`.ci/run` runs `--check`, so README.md's table cannot fall behind the committed rows.

Each line pairs method A against method B by seed (`scripts/paired.py`: wins/ties/losses of
A, one-sided exact Wilcoxon p that A's test MAE is lower, tied pairs left out), on the seeds
both have. `stated` says whether the hypothesis was written into BENCHMARKS.md before any of
its rows existed (`yes`), only before an extension's rows (the seeds named), or not at all
(`no`: a comparison run first and read after, or a reading beside a stated test); only the
`yes` lines are tests in the strict sense. `goal met` is the issue's p < 0.1, except on the
time-to-quality lines (A given 0.3x of the budget against B given all of it), which carry the
rule stated for them: A is as good as B (a mean test MAE no higher and at least as many wins
as losses) and A beats random search given the same 0.3x with p < 0.1 (the data set's
"both given 0.3x" line in steps, its cost-matched line in seconds), else reaching B's quality
would say nothing about speed.

A comparison joins LEDGER only once BENCHMARKS.md has read it, so that this script never
shows a test's result before its stated reading.
"""
import os
import sys
from collections import namedtuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import pair_by, rows_by_method  # noqa: E402

R = "bench/results/"
BEGIN = "<!-- ledger: python3 scripts/ledger.py --write -->\n"
END = "<!-- /ledger -->\n"

# One comparison: data set, what is compared, budget, A and B as FILE:METHOD (files under
# bench/results/ without the `search-` prefix and `.jsonl`), stated, BENCHMARKS.md section.
Line = namedtuple("Line", "data what budget a b stated where")

LEDGER = [Line(*e) for e in [
    ("chickenpox", "offline vs random, wiring-only space", "equal steps",
     "chickenpox:offline", "chickenpox:random", "no",
     "Search vs random search at equal compute"),
    ("chickenpox", "offline vs random, joint space", "equal steps",
     "chickenpox-joint:offline", "chickenpox-joint:random", "no", "The joint space"),
    ("chickenpox", "the same, a later build", "equal steps",
     "chickenpox-joint-rebuild:offline", "chickenpox-joint-rebuild:random", "no",
     "The joint space"),
    ("chickenpox", "diverse exploration vs random", "equal steps",
     "chickenpox-joint:offline-diverse", "chickenpox-joint:random", "no", "The joint space"),
    ("chickenpox", "exploration share 0.25 vs random", "equal steps",
     "chickenpox-joint-explore25:offline", "chickenpox-joint-explore25:random", "no",
     "The joint space"),
    ("chickenpox", "rungs with a reserve vs random", "equal steps",
     "chickenpox-joint-reserve:offline", "chickenpox-joint-reserve:random", "no",
     "The joint space"),
    ("chickenpox", "guided optimization vs random", "equal steps",
     "chickenpox-joint-guided:offline-guided", "chickenpox-joint-guided:random", "no",
     "The joint space"),
    ("chickenpox", "prior-ranked (METR-LA banks) vs random", "equal steps",
     "chickenpox-joint-prior:offline-prior", "chickenpox-joint-prior:random", "no",
     "The joint space"),
    ("chickenpox", "prior-ranked, pool 8, later build", "equal steps",
     "chickenpox-joint-prior-v34:offline-prior", "chickenpox-joint-prior-v34:random", "yes",
     "A larger prior pool"),
    ("chickenpox", "prior-ranked, pool 64", "equal steps",
     "chickenpox-joint-prior64:offline-prior", "chickenpox-joint-prior64:random", "yes",
     "A larger prior pool"),
    ("chickenpox", "prior-ranked vs random, both given 0.3x", "0.3x steps",
     "chickenpox-joint-prior-third:offline-prior", "chickenpox-joint-prior-third:random", "yes",
     "A third of the budget, on fresh seeds"),
    ("chickenpox", "prior-ranked given 0.3x vs random given 1x", "0.3x vs 1x steps",
     "chickenpox-joint-prior-third:offline-prior", "chickenpox-joint-prior-fresh:random", "yes",
     "Time to quality as whole searches"),
    ("chickenpox", "prior-ranked vs random", "equal seconds, 0.3x",
     "chickenpox-joint-prior-seconds-third:offline-prior",
     "chickenpox-joint-prior-seconds-third:random", "yes", "Equal seconds instead of equal steps"),
    ("chickenpox", "prior-ranked vs random", "equal seconds, 1x",
     "chickenpox-joint-prior-seconds:offline-prior", "chickenpox-joint-prior-seconds:random",
     "yes", "Equal seconds instead of equal steps"),
    ("chickenpox", "cost-matched prior vs random (M1)", "equal seconds, 0.3x",
     "chickenpox-joint-prior-matched-seconds-third:offline-prior",
     "chickenpox-joint-prior-matched-seconds-third:random", "yes",
     "A prior that pays for its designs"),
    ("chickenpox", "cost-matched prior given 0.3x vs random given 1x", "0.3x vs 1x seconds",
     "chickenpox-joint-prior-matched-seconds-third:offline-prior",
     "chickenpox-joint-prior-matched-seconds-whole:random", "yes",
     "Time to quality in seconds"),
    ("chickenpox", "cost-matched vs cost-ignoring prior (I1)", "equal seconds, 0.3x",
     "chickenpox-joint-prior-matched-seconds-third:offline-prior",
     "chickenpox-joint-prior-ignore-seconds-third:offline-prior", "yes",
     "The same seeds with cost ignored"),
    ("chickenpox", "cost-ignoring prior vs random", "equal seconds, 0.3x",
     "chickenpox-joint-prior-ignore-seconds-third:offline-prior",
     "chickenpox-joint-prior-matched-seconds-third:random", "no",
     "The same seeds with cost ignored"),
    ("chickenpox", "local model (gemma-3-270m) vs random", "equal steps",
     "chickenpox-joint-llm:llm-local", "chickenpox-joint-llm:random", "yes",
     "The local model against random search, paired seeds"),
    ("chickenpox", "local model vs offline", "equal steps",
     "chickenpox-joint-llm:llm-local", "chickenpox-joint-llm:offline", "yes",
     "The local model against random search, paired seeds"),
    ("chickenpox", "offline vs random, the local model's seeds", "equal steps",
     "chickenpox-joint-llm:offline", "chickenpox-joint-llm:random", "yes",
     "The local model against random search, paired seeds"),
    ("METR-LA week", "offline vs random, joint space", "equal steps",
     "metr-la-joint:offline", "metr-la-joint:random", "no", "The joint space"),
    ("METR-LA week", "prior-ranked (chickenpox banks) vs random", "equal steps",
     "metr-la-joint-prior:offline-prior", "metr-la-joint-prior:random", "seeds +8..+15",
     "The joint space"),
    ("METR-LA week", "prior-ranked vs random, both given 0.3x", "0.3x steps",
     "metr-la-joint-prior-third:offline-prior", "metr-la-joint-prior-third:random", "yes",
     "A third of the budget, on fresh seeds"),
    ("METR-LA week", "prior-ranked given 0.3x vs random given 1x", "0.3x vs 1x steps",
     "metr-la-joint-prior-third:offline-prior", "metr-la-joint-prior-fresh:random", "yes",
     "Time to quality as whole searches"),
    ("METR-LA week", "prior-ranked vs random (H)", "equal seconds, 0.3x",
     "metr-la-joint-prior-seconds-third:offline-prior",
     "metr-la-joint-prior-seconds-third:random", "yes", "Equal seconds on METR-LA"),
    ("METR-LA week", "prior-ranked given 0.3x vs random given 1x", "0.3x vs 1x seconds",
     "metr-la-joint-prior-seconds-third:offline-prior",
     "metr-la-joint-prior-seconds-whole:random", "yes", "Time to quality in seconds on METR-LA"),
    ("METR-LA week", "cost-matched prior vs random (M3)", "equal seconds, 0.3x",
     "metr-la-joint-prior-matched-seconds-third:offline-prior",
     "metr-la-joint-prior-seconds-third:random", "yes", "Equal seconds on METR-LA"),
    ("METR-LA week", "cost-matched vs cost-ignoring prior (I3)", "equal seconds, 0.3x",
     "metr-la-joint-prior-matched-seconds-third:offline-prior",
     "metr-la-joint-prior-seconds-third:offline-prior", "yes", "Equal seconds on METR-LA"),
    ("PedalMe", "prior-ranked vs random", "equal steps",
     "pedalme-joint-prior:offline-prior", "pedalme-joint-prior:random", "yes",
     "A data set never searched before"),
    ("PedalMe", "prior-ranked vs random, both given 0.3x", "0.3x steps",
     "pedalme-joint-prior-third:offline-prior", "pedalme-joint-prior-third:random", "yes",
     "A data set never searched before"),
    ("PedalMe", "prior-ranked given 0.3x vs random given 1x", "0.3x vs 1x steps",
     "pedalme-joint-prior-third:offline-prior", "pedalme-joint-prior:random", "yes",
     "Time to quality as whole searches"),
    ("PedalMe", "cost-matched prior vs random (M2)", "equal seconds, 0.3x",
     "pedalme-joint-prior-matched-seconds-third:offline-prior",
     "pedalme-joint-prior-matched-seconds-third:random", "yes",
     "A prior that pays for its designs"),
    ("PedalMe", "cost-matched prior given 0.3x vs random given 1x", "0.3x vs 1x seconds",
     "pedalme-joint-prior-matched-seconds-third:offline-prior",
     "pedalme-joint-prior-matched-seconds-whole:random", "yes", "Time to quality in seconds"),
    ("PedalMe", "cost-matched vs cost-ignoring prior (I2)", "equal seconds, 0.3x",
     "pedalme-joint-prior-matched-seconds-third:offline-prior",
     "pedalme-joint-prior-ignore-seconds-third:offline-prior", "yes",
     "The same seeds with cost ignored"),
    ("PedalMe", "cost-ignoring prior vs random", "equal seconds, 0.3x",
     "pedalme-joint-prior-ignore-seconds-third:offline-prior",
     "pedalme-joint-prior-matched-seconds-third:random", "no",
     "The same seeds with cost ignored"),
]]


def path_of(spec):
    """`FILE:METHOD` -> (bench/results/search-FILE.jsonl, METHOD)."""
    stem, method = spec.rsplit(":", 1)
    return f"{R}search-{stem}.jsonl", method


def column(spec, cache):
    """{seed: test MAE} of one `FILE:METHOD`, or None if the file or method has no rows."""
    path, method = path_of(spec)
    if path not in cache:  # each file is read once
        cache[path] = rows_by_method(path) if os.path.exists(path) else {}
    return cache[path].get(method)


def paired(a, b, cache, problems):
    """[`pair_by`] of `FILE:METHOD` a against b, or None (adding what is missing to `problems`)
    without rows."""
    ca, cb = column(a, cache), column(b, cache)
    for spec, c in ((a, ca), (b, cb)):
        if not c:
            problems.add(f"{path_of(spec)[0]}: no rows of method '{path_of(spec)[1]}'")
    return pair_by({"A": ca, "B": cb}, a, "A", "B") if ca and cb else None


def goal(line, r, cache, problems):
    """'yes' or 'no' by the line's rule (the module's doc), or '-' when a reading is missing."""
    if "vs 1x" not in line.budget:
        return "yes" if r["p"] < 0.1 else "no"
    as_good = r["mean"] <= r["against_mean"] and r["wins"] >= r["losses"]
    # The same A against random search given the same 0.3x: the data set's "both given 0.3x"
    # line (in steps) or its cost-matched line (in seconds).
    third = [e for e in LEDGER if e.data == line.data and e.a == line.a
             and "vs 1x" not in e.budget and e.b.endswith(":random")]
    t = paired(third[0].a, third[0].b, cache, problems) if third else None
    return "-" if t is None else ("yes" if as_good and t["p"] < 0.1 else "no")


def table(problems):
    """The ledger as markdown lines; what cannot be computed goes into `problems`."""
    cache = {}
    lines = ["| data | comparison (A vs B) | budget | seeds | A mean | B mean | A vs B | "
             "wins/ties/losses | one-sided p | goal met | stated |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---|---|"]
    for line in LEDGER:
        r = paired(line.a, line.b, cache, problems)
        if r is None:
            continue
        change = (r["mean"] / r["against_mean"] - 1) * 100
        lines.append(
            f"| {line.data} | {line.what} | {line.budget} | {len(r['seeds'])} | {r['mean']:.4f} | "
            f"{r['against_mean']:.4f} | {change:+.1f}% | {r['wins']}/{r['ties']}/{r['losses']} | "
            f"{r['p']:.3f} | {goal(line, r, cache, problems)} | {line.stated} |")
    return lines


def readme_parts():
    """README.md split around its ledger markers: (before, table, after); exits if absent."""
    text = open("README.md").read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        sys.exit(f"README.md: want the lines {BEGIN.strip()} and {END.strip()} once each, in order")
    before, rest = text.split(BEGIN)
    inside, after = rest.split(END)
    return before, inside, after


def main(mode):
    problems = set()
    text = "\n".join(table(problems)) + "\n"
    benchmarks = open("BENCHMARKS.md").read()
    problems |= {f"BENCHMARKS.md: no section '{e.where}' (named by the ledger for '{e.what}')"
                 for e in LEDGER if e.where not in benchmarks}
    if mode == "--write":
        before, _old, after = readme_parts()
        open("README.md", "w").write(before + BEGIN + text + END + after)
    elif mode == "--check":
        if readme_parts()[1] != text:
            problems.add("README.md: the ledger table is not what the committed rows give "
                         "(run python3 scripts/ledger.py --write)")
    else:
        print(text, end="")
    for p in sorted(problems):
        print(p, file=sys.stderr)
    if mode == "--check" and problems:
        sys.exit(1)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) > 1 or any(a not in ("--check", "--write") for a in args):
        sys.exit(__doc__)
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    main(args[0] if args else None)
