#!/usr/bin/env bash
# Runs the multi-rank tests of comm/ under mpirun and prints a summary in the style of
# run_tests.sh: every tests/mpi/test_* binary at -np 2 and -np 4 (rank 0's GoogleTest counts,
# which include failures on any rank), then the timeout probe, which must end the job within
# its timeout with the message and a non-zero exit status. Usage: run_mpi_tests.sh BUILD/tests/mpi
set -u
dir=${1:?usage: run_mpi_tests.sh BUILD/tests/mpi}
MPIRUN=${MPIRUN:-mpirun}
launch=("$MPIRUN" --oversubscribe)
[ "$(id -u)" = 0 ] && launch+=(--allow-run-as-root)
# Tests fail fast instead of waiting the default 300 s if a transfer hangs.
# OpenMP threads that wait passively: several ranks share few cores here.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export MINIPIPE_COMM_TIMEOUT_S=${MINIPIPE_COMM_TIMEOUT_S:-30}
launch+=(-x MINIPIPE_COMM_TIMEOUT_S -x OMP_WAIT_POLICY)

total_ran=0; total_passed=0; total_skipped=0; total_failed=0; failed_runs=(); summary=""
record() {  # name ran passed skipped failed
    summary+=$(printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d' "$1" "$2" "$3" "$4" "$5")$'\n'
    total_ran=$((total_ran + $2)); total_passed=$((total_passed + $3))
    total_skipped=$((total_skipped + $4)); total_failed=$((total_failed + $5))
}

for bin in "$dir"/test_*; do
    [ -x "$bin" ] || continue
    for np in 2 4; do
        name="$(basename "$bin") (np $np)"
        log=$(mktemp)
        timeout 600 "${launch[@]}" -np "$np" "$bin" --gtest_brief=0 --gtest_color=no >"$log" 2>&1
        status=$?
        ran=$(grep -oP '^\[==========\] \K[0-9]+(?= tests? from .* ran)' "$log" | tail -n1)
        passed=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$log" | tail -n1)
        skipped=$(grep -oP '^\[  SKIPPED \] \K[0-9]+(?= tests?,)' "$log" | tail -n1)
        failed=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= tests?,)' "$log" | tail -n1)
        ran=${ran:-0}; passed=${passed:-0}; skipped=${skipped:-0}; failed=${failed:-0}
        if [ "$status" -ne 0 ]; then
            [ "$failed" -eq 0 ] && failed=1  # the job died before gtest could count
            failed_runs+=("$name")
            echo "---- $name failed (exit $status); its output:"
            grep -v -E '^\[ +(RUN|OK) +\]' "$log" | tail -n 80
        fi
        record "$name" "$ran" "$passed" "$skipped" "$failed"
        rm -f "$log"
    done
done

# The timeout path: rank 1 waits for a recv that never comes.
probe="$dir/probe_timeout"
if [ -x "$probe" ]; then
    name="probe_timeout (np 2)"
    limit=3
    log=$(mktemp)
    start=$(date +%s)
    MINIPIPE_COMM_TIMEOUT_S=$limit timeout 120 "${launch[@]}" -np 2 "$probe" >"$log" 2>&1
    status=$?
    elapsed=$(( $(date +%s) - start ))
    problems=()
    [ "$status" -eq 0 ] && problems+=("exit status 0, expected non-zero")
    [ "$status" -eq 124 ] && problems+=("the job hung until the script's own 120 s limit")
    [ "$elapsed" -gt $((limit + 30)) ] && problems+=("took ${elapsed} s for a ${limit} s timeout")
    for fragment in "rank 1" "timed out after $limit s" "recv float32(4, 8) on cpu from rank 0 tag 7 (128 bytes)"; do
        grep -qF "$fragment" "$log" || problems+=("the output lacks '$fragment'")
    done
    if [ ${#problems[@]} -eq 0 ]; then
        echo "probe_timeout: job ended after ${elapsed} s (timeout ${limit} s), exit ${status}: $(grep -m1 'timed out' "$log")"
        record "$name" 1 1 0 0
    else
        failed_runs+=("$name")
        echo "---- $name failed: ${problems[*]}; its output:"
        tail -n 40 "$log"
        record "$name" 1 0 0 1
    fi
    rm -f "$log"
fi

echo "==== multi-rank test summary (mpirun)"
printf '%s' "$summary"
printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d\n' "ALL" "$total_ran" "$total_passed" "$total_skipped" "$total_failed"
if [ "$total_skipped" -gt 0 ]; then echo "  (skipped tests need a GPU, or one GPU per rank for NCCL across ranks)"; fi
if [ ${#failed_runs[@]} -gt 0 ]; then echo "FAILED: ${failed_runs[*]}"; exit 1; fi
