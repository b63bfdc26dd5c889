#!/usr/bin/env bash
# Runs every test binary given on the command line and prints one summary: how many tests
# ran, passed, were skipped (GPU tests on a machine with no GPU) and failed, per binary and in all.
# Options (environment), used by tools/gpu_check.sh:
#   MP_TESTS_SHOW_SKIPPED=1       name every skipped test under its binary's line
#   MP_TESTS_RERUN_FAILED=1       rerun a failing binary's failed tests with CUDA_LAUNCH_BLOCKING=1,
#                                 so the first bad kernel launch is the one reported
#   MP_TESTS_TIMEOUT_S=N          stop a binary that runs longer than N seconds (counted failed)
set -u
show_skipped=${MP_TESTS_SHOW_SKIPPED:-0}
rerun_failed=${MP_TESTS_RERUN_FAILED:-0}
limit=${MP_TESTS_TIMEOUT_S:-0}
rerun_limit=$([ "$limit" -gt 0 ] && echo "$limit" || echo 600)
total_ran=0; total_passed=0; total_skipped=0; total_failed=0; failed_binaries=()
summary=""
for bin in "$@"; do
    name=$(basename "$bin")
    log=$(mktemp)
    if [ "$limit" -gt 0 ]; then timeout -k 5 "$limit" "$bin" --gtest_brief=0 >"$log" 2>&1
    else "$bin" --gtest_brief=0 >"$log" 2>&1; fi
    status=$?
    ran=$(grep -oP '^\[==========\] \K[0-9]+(?= tests? from .* ran)' "$log" | tail -n1)
    passed=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$log" | tail -n1)
    skipped=$(grep -oP '^\[  SKIPPED \] \K[0-9]+(?= tests?,)' "$log" | tail -n1)
    failed=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= tests?,)' "$log" | tail -n1)
    ran=${ran:-0}; passed=${passed:-0}; skipped=${skipped:-0}; failed=${failed:-0}
    if [ "$status" -ne 0 ]; then
        [ "$failed" -eq 0 ] && failed=1  # crashed (or timed out) before gtest could count
        failed_binaries+=("$name")
        if [ "$status" -eq 124 ]; then echo "---- $name timed out after ${limit} s; its output:"
        else echo "---- $name failed (exit $status); its output:"; fi
        grep -v -E '^\[ +(RUN|OK) +\]' "$log" | tail -n 80
        if [ "$rerun_failed" = 1 ]; then
            # The failed tests' names, from GoogleTest's closing list (none when it crashed).
            filter=$(grep -oP '^\[  FAILED  \] \K[A-Za-z0-9_/.]+(?=$| \()' "$log" | sort -u | paste -sd: -)
            echo "---- $name rerun with CUDA_LAUNCH_BLOCKING=1 ${filter:+(--gtest_filter=$filter)}:"
            CUDA_LAUNCH_BLOCKING=1 timeout -k 5 "$rerun_limit" "$bin" --gtest_brief=1 ${filter:+--gtest_filter="$filter"} 2>&1 | tail -n 60
        fi
    fi
    summary+=$(printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d' "$name" "$ran" "$passed" "$skipped" "$failed")$'\n'
    if [ "$show_skipped" = 1 ] && [ "$skipped" -gt 0 ]; then
        # GoogleTest lists the skipped tests at the end as "[  SKIPPED ] Suite.Name" (no time).
        while read -r test; do summary+="      skipped: $test"$'\n'; done \
            < <(grep -oP '^\[  SKIPPED \] \K[A-Za-z0-9_/.]+$' "$log" | sort -u)
    fi
    total_ran=$((total_ran + ran)); total_passed=$((total_passed + passed))
    total_skipped=$((total_skipped + skipped)); total_failed=$((total_failed + failed))
    rm -f "$log"
done
echo "==== test summary"
printf '%s' "$summary"
printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d\n' "ALL" "$total_ran" "$total_passed" "$total_skipped" "$total_failed"
if [ "$total_skipped" -gt 0 ]; then echo "  (skipped tests need a GPU; they all run on a GPU machine)"; fi
if [ ${#failed_binaries[@]} -gt 0 ]; then echo "FAILED: ${failed_binaries[*]}"; exit 1; fi
