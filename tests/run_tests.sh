#!/usr/bin/env bash
# Runs every test binary given on the command line and prints one summary: how many tests
# ran, passed, were skipped (GPU tests on a machine with no GPU) and failed, per binary and in all.
set -u
total_ran=0; total_passed=0; total_skipped=0; total_failed=0; failed_binaries=()
summary=""
for bin in "$@"; do
    name=$(basename "$bin")
    log=$(mktemp)
    "$bin" --gtest_brief=0 >"$log" 2>&1
    status=$?
    ran=$(grep -oP '^\[==========\] \K[0-9]+(?= tests? from .* ran)' "$log" | tail -n1)
    passed=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$log" | tail -n1)
    skipped=$(grep -oP '^\[  SKIPPED \] \K[0-9]+(?= tests?,)' "$log" | tail -n1)
    failed=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= tests?,)' "$log" | tail -n1)
    ran=${ran:-0}; passed=${passed:-0}; skipped=${skipped:-0}; failed=${failed:-0}
    if [ "$status" -ne 0 ]; then
        [ "$failed" -eq 0 ] && failed=1  # crashed before gtest could count
        failed_binaries+=("$name")
        echo "---- $name failed (exit $status); its output:"
        grep -v -E '^\[ +(RUN|OK) +\]' "$log" | tail -n 80
    fi
    summary+=$(printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d' "$name" "$ran" "$passed" "$skipped" "$failed")$'\n'
    total_ran=$((total_ran + ran)); total_passed=$((total_passed + passed))
    total_skipped=$((total_skipped + skipped)); total_failed=$((total_failed + failed))
    rm -f "$log"
done
echo "==== test summary"
printf '%s' "$summary"
printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d\n' "ALL" "$total_ran" "$total_passed" "$total_skipped" "$total_failed"
if [ "$total_skipped" -gt 0 ]; then echo "  (skipped tests need a GPU; they all run on a GPU machine)"; fi
if [ ${#failed_binaries[@]} -gt 0 ]; then echo "FAILED: ${failed_binaries[*]}"; exit 1; fi
