#!/usr/bin/env bash
# CPU smoke test of the end-to-end GPT benchmark (bench/bench_gpt, bench/torch_gpt.py, bench/report_gpt.py),
# a few seconds: --tiny runs exit 0 and write JSON with every field, tokens/s > 0 and finite losses;
# --device cuda says "no GPU" and exits 0 on a machine without one (or runs there when there is one);
# bad options and an out-of-memory model fail with a message and a non-zero status, never a crash.
# Usage: run_bench_smoke.sh BUILD_DIR   (bench_gpt must be built: make BUILD_DIR/bench/bench_gpt)
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # as run_bench_gpt.sh: no spinning threads on shared cores
build=${1:?usage: run_bench_smoke.sh BUILD_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
bench=$build/bench/bench_gpt
out=$(mktemp -d)
passed=0; failed=0; skipped=0; failures=()

pass() { passed=$((passed + 1)); }
fail() {  # name, reason; shows the log when there is one
    failed=$((failed + 1)); failures+=("$1")
    echo "---- $1: $2"
    [ -f "$out/$1.log" ] && tail -n 20 "$out/$1.log"
}

# Checks a bench JSON: the fields both programs write, every run finished, tokens/s > 0, losses finite.
check_json() {  # name, file
    python3 - "$2" <<'EOF' >"$out/$1.check" 2>&1
import json, math, sys
result = json.load(open(sys.argv[1]))
for key in ("system", "device", "precision", "model", "parameters", "matmul_parameters", "flops_per_token",
            "flops_formula", "peak_flops", "peak_source", "warmup_steps", "timed_steps", "runs"):
    assert key in result, f"missing field {key}"
assert result["runs"], "no runs"
for run in result["runs"]:
    assert "error" not in run, f"batch {run.get('batch')} failed: {run.get('error')}"
    for key in ("batch", "ms_per_step", "ms_min", "ms_max", "tokens_per_s", "mfu", "peak_bytes", "loss_first", "loss_last"):
        assert key in run, f"missing field runs[].{key}"
    assert run["tokens_per_s"] > 0, f"tokens/s {run['tokens_per_s']}"
    for key in ("loss_first", "loss_last"):
        assert run[key] is not None and math.isfinite(run[key]), f"{key} is {run[key]}"
EOF
}

run_and_check() {  # name, json file, then the command: exit 0, then the JSON checks
    local name=$1 json=$2; shift 2
    "$@" >"$out/$name.log" 2>&1
    local status=$?
    if [ $status -ne 0 ]; then fail "$name" "exited with $status"
    elif ! check_json "$name" "$json"; then fail "$name" "$(cat "$out/$name.check")"
    else pass; fi
}

expect_failure() {  # name, fragment, then the command: a non-zero status below 128 (no signal) and the fragment
    local name=$1 fragment=$2; shift 2
    "$@" >"$out/$name.log" 2>&1
    local status=$?
    if [ $status -eq 0 ] || [ $status -ge 128 ]; then fail "$name" "exit status $status, expected a clean failure"
    elif ! grep -q -- "$fragment" "$out/$name.log"; then fail "$name" "'$fragment' not printed"
    else pass; fi
}

if [ ! -x "$bench" ]; then
    fail bench_gpt_built "$bench not found (make $bench)"
else
    run_and_check bench_gpt_tiny_cpu "$out/minipipe.json" "$bench" --tiny --device cpu --json "$out/minipipe.json"

    # The default device: on a machine without a GPU, a message and exit 0 (no JSON); with one, the tiny run.
    "$bench" --tiny --device cuda --json "$out/cuda.json" >"$out/bench_gpt_tiny_cuda.log" 2>&1
    status=$?
    if [ $status -ne 0 ]; then fail bench_gpt_tiny_cuda "exited with $status"
    elif [ -s "$out/cuda.json" ]; then
        if check_json bench_gpt_tiny_cuda "$out/cuda.json"; then pass; else fail bench_gpt_tiny_cuda "$(cat "$out/bench_gpt_tiny_cuda.check")"; fi
    elif grep -q "no GPU" "$out/bench_gpt_tiny_cuda.log"; then pass
    else fail bench_gpt_tiny_cuda "neither results nor a 'no GPU' message"; fi

    expect_failure bench_gpt_unknown_option "unknown option" "$bench" --tiny --bogus
    expect_failure bench_gpt_bad_precision "--precision must be" "$bench" --tiny --device cpu --precision bf16
    expect_failure bench_gpt_bad_shape "divisible by heads" "$bench" --tiny --device cpu --heads 3
    # 2·(12·C²) floats at C = 10⁶ are ~96 TB: the allocation fails, the run reports it (ASan: return null).
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1 \
        expect_failure bench_gpt_out_of_memory "out of host memory" "$bench" --tiny --device cpu --channels 1000000 --heads 1
fi

if python3 -c "import torch" 2>/dev/null; then
    run_and_check torch_gpt_tiny_cpu "$out/torch.json" python3 "$here/bench/torch_gpt.py" --tiny --device cpu --json "$out/torch.json"
    if [ -s "$out/minipipe.json" ] && [ -s "$out/torch.json" ]; then
        # The joiner exits non-zero when the two disagree on the model: both rows and a ratio must appear.
        if python3 "$here/bench/report_gpt.py" "$out/minipipe.json" "$out/torch.json" >"$out/report.log" 2>&1 &&
            grep -q "^| minipipe | fp32 | 4 |" "$out/report.log" && grep -q "^| pytorch.*| [0-9.]*x |$" "$out/report.log"; then
            pass
        else
            failed=$((failed + 1)); failures+=(report_gpt); echo "---- report_gpt: its output:"; cat "$out/report.log"
        fi
    else
        skipped=$((skipped + 1))
    fi
else
    echo "  (PyTorch is not importable: torch_gpt.py and the joined report are not checked)"
    skipped=$((skipped + 2))
fi

echo "==== bench smoke test (CPU)"
printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d\n' "bench_gpt" $((passed + failed)) "$passed" "$skipped" "$failed"
rm -rf "$out"
if [ "$failed" -gt 0 ]; then echo "FAILED: ${failures[*]}"; exit 1; fi
