#!/usr/bin/env bash
# Self-test of tools/gpu_check.sh on any machine (CI has no GPU), so that the one-shot check works
# the first time a GPU machine runs it: without a GPU it must say so and exit 0; forced to run
# (MINIPIPE_GPU_CHECK_FORCE=1) on a stand-in failing test binary it must write the report with the
# stage table, the skipped test named, the failure and its CUDA_LAUNCH_BLOCKING=1 rerun, and exit 1.
# Usage: run_gpu_check_selftest.sh BUILD_DIR
set -u
build=${1:?usage: run_gpu_check_selftest.sh BUILD_DIR}
out=$(mktemp -d)
problems=()
expect_in() {  # file, fragment
    grep -qF -- "$2" "$1" || problems+=("$(basename "$1") lacks '$2'")
}

if ! nvidia-smi -L >/dev/null 2>&1; then
    bash tools/gpu_check.sh "$out/none" >"$out/none.log" 2>&1
    status=$?
    [ $status -eq 0 ] || problems+=("no-GPU run: exit $status, expected 0")
    expect_in "$out/none/report.md" "no GPU visible"
    [ "$(ls "$out/none" | wc -l)" -le 8 ] || problems+=("no-GPU run left more than 8 files")
fi

# Every racecheck pattern names at least one test (a renamed suite must not drop out silently).
racecheck_filter=$(sed -n "s/^RACECHECK_FILTER='\(.*\)'$/\1/p" tools/gpu_check.sh)
[ -n "$racecheck_filter" ] || problems+=("RACECHECK_FILTER not found in tools/gpu_check.sh")
all_tests=$(for bin in "$build"/tests/test_*; do [ -x "$bin" ] && "$bin" --gtest_list_tests 2>/dev/null |
            awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}'; done)
IFS=: read -r -a racecheck_patterns <<<"$racecheck_filter"
for pattern in "${racecheck_patterns[@]}"; do
    regex="^$(sed 's/\./\\./g; s/\*/.*/g' <<<"$pattern")$"
    grep -q -- "$regex" <<<"$all_tests" || problems+=("racecheck pattern '$pattern' matches no test")
done

MINIPIPE_GPU_CHECK_FORCE=1 MINIPIPE_GPU_CHECK_TESTS="tests/support/fake_failing_gtest.sh $build/tests/test_partition" \
    bash tools/gpu_check.sh "$out/forced" probe tests >"$out/forced.log" 2>&1
status=$?
[ $status -eq 1 ] || problems+=("forced run with a failing test: exit $status, expected 1")
report="$out/forced/report.md"
expect_in "$report" "| probe |"
expect_in "$report" "| tests | FAIL |"
expect_in "$report" "ran 9 passed 7 skipped 1 failed 1"
expect_in "$report" "skipped: FakeCuda.Skipped"
expect_in "$report" "the kernel wrote 7 where 8 was expected"
expect_in "$report" "rerun with CUDA_LAUNCH_BLOCKING=1 (--gtest_filter=FakeCuda.Fails)"
expect_in "$report" "fake: rerun with CUDA_LAUNCH_BLOCKING=1"
expect_in "$report" "nlohmann/json"
expect_in "$report" "cudnn-frontend"
expect_in "$report" "## Fused attention"
[ "$(ls "$out/forced" | wc -l)" -le 8 ] || problems+=("forced run left more than 8 files")

bash tools/gpu_check.sh "$out/bad" no_such_stage >/dev/null 2>&1
[ $? -eq 2 ] || problems+=("an unknown stage name must exit 2")

echo "==== gpu_check self-test"
if [ ${#problems[@]} -eq 0 ]; then
    echo "  gpu_check                    ran    3  passed    3  skipped    0  failed    0"
    rm -rf "$out"
else
    printf '  problem: %s\n' "${problems[@]}"
    echo "  (logs and reports in $out)"
    exit 1
fi
