#!/usr/bin/env bash
# The METR-LA equal-seconds test's two phases (BENCHMARKS.md, "Equal seconds on METR-LA").
#
#   scripts/lockstep.sh search BUDGET FROM TO   # phase 1: seeds FROM..TO-1, arms in lockstep
#   scripts/lockstep.sh final  BUDGET FROM TO   # phase 2: every row's final training, 2 at once
#
# With ARMS=whole (BENCHMARKS.md, "Time to quality in seconds on METR-LA"): random search given
# the whole seconds budget, into its own file; phase 1 then runs three *seeds* at a time (the
# seeds FROM..TO-1 in groups of three, the last group filled up with the seeds after TO-1, whose
# rows only make the load alike and are not read), so each search shares the machine with two
# others as the three arms' searches did.
#
# Why two phases: only the searches are budgeted in seconds, so only they must share one load
# (the three arms of a seed at once, nothing else). The final trainings are bounded by epochs
# and resume from their checkpoints to the very model an uninterrupted run trains (the test
# `kill_minus_nine_in_the_final_training_resumes_after_its_last_epoch`), so phase 1 stops the
# three processes together once every one of them has reached its final training, and phase 2
# finishes them at any load. Both phases are resumable: `ists baseline` skips a row already in
# its file and resumes its run directory.
#
# BIN (default target/release/ists) and LOGDIR (default /tmp/lockstep) may be set.
set -u
cd "$(dirname "$0")/.."
phase=${1:?search or final}
budget=${2:?evaluation seconds}
from=${3:?first seed}
to=${4:?seed after the last}
BIN=${BIN:-target/release/ists}
LOGDIR=${LOGDIR:-/tmp/lockstep}
mkdir -p "$LOGDIR"
export OMP_NUM_THREADS=1 ISTS__SEARCH__BUDGET_STEPS=0 ISTS__SEARCH__BUDGET_SECONDS="$budget"
config=config/compare-metr-la-joint-prior.toml
arms=(ignore matched random)
[ "${ARMS:-}" = whole ] && arms=(whole)

# Runs arm $1 for seed $2 in the foreground, its log in LOGDIR.
run_arm() {
    local arm=$1 s=$2 method=offline-prior cost=ignore
    local file=bench/results/search-metr-la-joint-prior-seconds-third.jsonl
    case $arm in
        matched) cost=matched
                 file=bench/results/search-metr-la-joint-prior-matched-seconds-third.jsonl ;;
        random) method=random ;;
        whole) method=random
               file=bench/results/search-metr-la-joint-prior-seconds-whole.jsonl ;;
    esac
    ISTS__SEARCH__PRIOR_COST=$cost nice -n 5 "$BIN" baseline --config "$config" \
        --seeds $((s + 1)) --from-seed "$s" --methods "$method" --results "$file" \
        >>"$LOGDIR/$arm-$s.log" 2>&1
}

# Whether arm $1's process for seed $2 has reached its final training (or ended).
in_final() {
    grep -q "final training" "$LOGDIR/$1-$2.log" 2>/dev/null
}

# The (arm, seed) jobs of one lockstep group: a seed's three arms, or with ARMS=whole three
# seeds of the one arm.
groups() {
    if [ "${arms[*]}" = whole ]; then
        local s=$from
        while [ "$s" -lt "$to" ]; do
            echo "whole:$s whole:$((s + 1)) whole:$((s + 2))"
            s=$((s + 3))
        done
    else
        for s in $(seq "$from" $((to - 1))); do echo "${arms[@]/%/:$s}"; done
    fi
}

case $phase in
search)
    groups | while read -r -a jobs; do
        pids=()
        for j in "${jobs[@]}"; do
            a=${j%%:*} s=${j##*:}
            echo "== $(date -u +%FT%TZ) seed +$s $a start" >>"$LOGDIR/$a-$s.log"
            run_arm "$a" "$s" &
            pids+=($!)
        done
        echo "$(date -u +%FT%TZ) ${jobs[*]}: started ${pids[*]}"
        while :; do
            sleep 5
            ready=1
            for i in "${!jobs[@]}"; do
                kill -0 "${pids[$i]}" 2>/dev/null || continue
                in_final "${jobs[$i]%%:*}" "${jobs[$i]##*:}" || ready=0
            done
            [ $ready = 1 ] && break
        done
        # Every search is over: stop the final trainings together (phase 2 resumes them).
        for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null; done
        wait
        echo "$(date -u +%FT%TZ) ${jobs[*]}: searches done"
    done
    ;;
final)
    # Two workers take (arm, seed) jobs from a queue of mkdir claims. An earlier invocation's
    # claims go first: a row it left unfinished must be taken again (a finished row is skipped
    # by `ists baseline` itself).
    rm -rf "$LOGDIR"/claim-*
    worker() {
        for s in $(seq "$from" $((to - 1))); do
            for a in "${arms[@]}"; do
                mkdir "$LOGDIR/claim-$a-$s" 2>/dev/null || continue
                echo "== $(date -u +%FT%TZ) seed +$s $a final" >>"$LOGDIR/$a-$s.log"
                run_arm "$a" "$s"
                echo "$(date -u +%FT%TZ) seed +$s $a: rc=$?"
            done
        done
    }
    worker &
    worker &
    wait
    ;;
*) echo "phase: search or final" >&2; exit 2 ;;
esac
