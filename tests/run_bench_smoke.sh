#!/usr/bin/env bash
# CPU smoke test of the end-to-end GPT benchmark (bench/bench_gpt, bench/torch_gpt.py, bench/report_gpt.py,
# bench/run_bench_gpt.sh), under a minute: --tiny runs in fp32 and bf16 exit 0 and write JSON with every
# field, tokens/s > 0 and finite losses; --device cuda says "no GPU" and exits 0 on a machine without one
# (or runs there when there is one); bad options and an out-of-memory model fail with a message and a
# non-zero status, never a crash; run_bench_gpt.sh joins fp32 and bf16 rows of minipipe, PyTorch eager and
# torch.compile (its "eager" backend: tracing only, seconds) into one report with both ratios; a
# torch.compile that cannot compile says why and exits 0; bench/cpu_vs_torch.sh prints its table of
# alternating rounds. No speed is checked: only that it all runs.
# And of the kernel benchmark (make bench: bench/bench_kernels, bench/torch_ops.py, bench/report.py,
# bench/run_bench.sh): bench_kernels says "no GPU" and exits 0 here; torch_ops.py --dry runs every row on
# the CPU, with exactly bench_kernels.cpp's row names (report.py pairs rows by name); report.py and
# run_bench.sh, fed a stand-in bench_kernels, print every row, PyTorch's alternatives and row errors, and
# a row error makes the exit status non-zero after the table.
# Usage: run_bench_smoke.sh BUILD_DIR   (bench_gpt must be built: make BUILD_DIR/bench/bench_gpt; the
# checks that run bench_kernels itself are skipped when it is not built)
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

# Checks a bench JSON: the fields both programs write, every run finished, tokens/s > 0, losses finite,
# and the precision (and implementation, when given) expected.
check_json() {  # name, file[, precision[, implementation]]
    python3 - "$2" "${3:-}" "${4:-}" <<'EOF' >"$out/$1.check" 2>&1
import json, math, sys
result = json.load(open(sys.argv[1]))
precision, implementation = sys.argv[2], sys.argv[3]
assert not precision or result.get("precision") == precision, f"precision {result.get('precision')}, not {precision}"
assert not implementation or result.get("implementation") == implementation, \
    f"implementation {result.get('implementation')}, not {implementation}"
for key in ("system", "device", "precision", "model", "parameters", "matmul_parameters", "flops_per_token",
            "flops_formula", "peak_flops", "peak_source", "warmup_steps", "timed_steps", "runs"):
    assert key in result, f"missing field {key}"
assert result["runs"], "no runs"
for run in result["runs"]:
    assert "error" not in run, f"batch {run.get('batch')} failed: {run.get('error')}"
    for key in ("batch", "ms_per_step", "ms_min", "ms_max", "tokens_per_s", "mfu", "peak_bytes", "loss_first",
                "loss_last"):
        assert key in run, f"missing field runs[].{key}"
    assert run["tokens_per_s"] > 0, f"tokens/s {run['tokens_per_s']}"
    for key in ("loss_first", "loss_last"):
        assert run[key] is not None and math.isfinite(run[key]), f"{key} is {run[key]}"
EOF
}

run_and_check() {  # name, json file, precision, then the command: exit 0, then the JSON checks
    local name=$1 json=$2 precision=$3; shift 3
    "$@" >"$out/$name.log" 2>&1
    local status=$?
    if [ $status -ne 0 ]; then fail "$name" "exited with $status"
    elif ! check_json "$name" "$json" "$precision"; then fail "$name" "$(cat "$out/$name.check")"
    else pass; fi
}

check_file() {  # name, json file, precision, implementation: a file another command left
    if [ ! -s "$2" ]; then fail "$1" "$2 was not written"
    elif ! check_json "$1" "$2" "$3" "$4"; then fail "$1" "$(cat "$out/$1.check")"
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
    run_and_check bench_gpt_tiny_cpu "$out/minipipe.json" fp32 "$bench" --tiny --device cpu --json "$out/minipipe.json"
    # Mixed precision: float32 masters, bfloat16 compute copies; the loss is float32 and finite.
    run_and_check bench_gpt_tiny_cpu_bf16 "$out/minipipe_bf16.json" bf16 \
        "$bench" --tiny --device cpu --precision bf16 --json "$out/minipipe_bf16.json"

    # The default device: on a machine without a GPU, a message and exit 0 (no JSON); with one, the tiny run.
    "$bench" --tiny --device cuda --json "$out/cuda.json" >"$out/bench_gpt_tiny_cuda.log" 2>&1
    status=$?
    if [ $status -ne 0 ]; then fail bench_gpt_tiny_cuda "exited with $status"
    elif [ -s "$out/cuda.json" ]; then
        if check_json bench_gpt_tiny_cuda "$out/cuda.json"; then pass
        else fail bench_gpt_tiny_cuda "$(cat "$out/bench_gpt_tiny_cuda.check")"; fi
    elif grep -q "no GPU" "$out/bench_gpt_tiny_cuda.log"; then pass
    else fail bench_gpt_tiny_cuda "neither results nor a 'no GPU' message"; fi

    expect_failure bench_gpt_unknown_option "unknown option" "$bench" --tiny --bogus
    expect_failure bench_gpt_bad_precision "--precision: \"fp16\" is not one of fp32 | tf32 | bf16" "$bench" --tiny --device cpu --precision fp16
    expect_failure bench_gpt_bad_shape "divisible by heads" "$bench" --tiny --device cpu --heads 3
    # 2·(12·C²) floats at C = 10⁶ are ~96 TB: the allocation fails, the run reports it with the sizes (ASan:
    # return null).
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1 \
        expect_failure bench_gpt_out_of_memory "cpu_allocator: out of memory allocating" \
            "$bench" --tiny --device cpu --channels 1000000 --heads 1
fi

if python3 -c "import torch" 2>/dev/null && [ -x "$bench" ]; then
    # The whole script as a GPU machine runs it, in its own folder: fp32 and bf16, eager and (bf16) compile.
    mkdir -p "$out/build/bench" && ln -s "$(cd "$(dirname "$bench")" && pwd)/bench_gpt" "$out/build/bench/bench_gpt"
    TORCH_GPT_COMPILE_BACKEND=eager bash "$here/bench/run_bench_gpt.sh" "$out/build" --tiny --device cpu \
        --precision fp32,bf16 --compile=bf16 >"$out/run_bench_gpt.log" 2>&1
    status=$?
    if [ $status -ne 0 ]; then fail run_bench_gpt "exited with $status"; tail -n 30 "$out/run_bench_gpt.log"
    else pass; fi
    results=$out/build/bench
    check_file torch_gpt_tiny_cpu "$results/torch_gpt_fp32_math.json" fp32 "PyTorch eager"
    check_file torch_gpt_tiny_cpu_bf16 "$results/torch_gpt_bf16_math.json" bf16 "PyTorch eager"
    check_file torch_gpt_tiny_cpu_compile "$results/torch_gpt_bf16_compile.json" bf16 "torch.compile"
    # The joined report: minipipe's rows in both precisions, a ratio on PyTorch's rows, and the summary
    # with both ratios (eager and torch.compile) for bf16.
    report_ok=1
    for line in "^| minipipe | fp32 | 4 |" "^| minipipe | bf16 | 4 |" \
                "^| PyTorch eager (attention math) | bf16 | 4 |.*| [0-9.]*x |$" \
                "^| torch.compile \[backend eager\] (attention math) | bf16 | 4 |.*| [0-9.]*x |$" \
                "^| bf16 | 4 | [0-9]* | [0-9]* (math) | [0-9.]*x | [0-9]* (math) | [0-9.]*x |$" "^machine: cpu"; do
        if ! grep -q -- "$line" "$out/run_bench_gpt.log"; then
            report_ok=0
            echo "---- report_gpt: no line matching '$line'"
        fi
    done
    if [ $report_ok = 1 ]; then pass
    else failed=$((failed + 1)); failures+=(report_gpt); sed -n '/^machine:/,$p' "$out/run_bench_gpt.log"; fi

    # The side-by-side CPU comparison (bench/cpu_vs_torch.sh) at the tiny shape, two rounds: a row per
    # round, the medians, the ratio and the machine; a bad --rounds fails with a message.
    bash "$here/bench/cpu_vs_torch.sh" "$out/build" --tiny --rounds 2 >"$out/cpu_vs_torch.log" 2>&1
    status=$?
    missing=""
    for line in "^machine: .*cores" "^minipipe: cpu (2 threads" "^| 1 | [0-9.]* | [0-9]* | [0-9]* | [0-9.]*x |$" \
                "^| 2 | " "^| median | | [0-9]* | [0-9]* | [0-9.]*x |$" "^ratio of the medians [0-9.]*x"; do
        grep -q -- "$line" "$out/cpu_vs_torch.log" || missing="$missing '$line'"
    done
    if [ $status -ne 0 ]; then fail cpu_vs_torch "exited with $status"; tail -n 30 "$out/cpu_vs_torch.log"
    elif [ -n "$missing" ]; then fail cpu_vs_torch "no line matching$missing"; cat "$out/cpu_vs_torch.log"
    else pass; fi
    expect_failure cpu_vs_torch_bad_rounds "--rounds needs a positive integer" \
        bash "$here/bench/cpu_vs_torch.sh" "$out/build" --tiny --rounds 0

    # A torch.compile that cannot compile here (an unknown backend stands in for a missing compiler):
    # the reason printed and in the JSON, exit 0, no crash.
    python3 "$here/bench/torch_gpt.py" --tiny --device cpu --compile --compile-backend no_such_backend \
        --json "$out/no_compile.json" >"$out/torch_gpt_compile_unavailable.log" 2>&1
    status=$?
    if [ $status -ne 0 ]; then fail torch_gpt_compile_unavailable "exited with $status"
    elif ! grep -q "torch.compile unavailable here: InvalidBackend" "$out/torch_gpt_compile_unavailable.log"; then
        fail torch_gpt_compile_unavailable "no reason printed"
    elif ! grep -q '"error": "torch.compile unavailable here' "$out/no_compile.json"; then
        fail torch_gpt_compile_unavailable "the reason is not in the JSON"
    else pass; fi
else
    echo "  (PyTorch is not importable or bench_gpt is not built:" \
         "torch_gpt.py, run_bench_gpt.sh, cpu_vs_torch.sh and the report are not checked)"
    skipped=$((skipped + 8))
fi

# ---------------------------------------------------------------- the kernel benchmark (make bench)
kernels=$build/bench/bench_kernels
if [ -x "$kernels" ]; then
    # Without a GPU (or in a CPU-only build): a message, exit 0, no JSON. With one it would run the
    # whole benchmark, which is make bench's job, not this test's.
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        skipped=$((skipped + 1))
    else
        "$kernels" --json "$out/kernels.json" >"$out/bench_kernels_no_gpu.log" 2>&1
        status=$?
        if [ $status -ne 0 ]; then fail bench_kernels_no_gpu "exited with $status"
        elif [ -s "$out/kernels.json" ]; then fail bench_kernels_no_gpu "wrote JSON without a GPU"
        elif ! grep -q -e "no GPU visible" -e "built without CUDA" "$out/bench_kernels_no_gpu.log"; then
            fail bench_kernels_no_gpu "no 'no GPU' message"
        else pass; fi
    fi
    expect_failure bench_kernels_unknown_option "usage:" "$kernels" --bogus
else
    echo "  ($kernels is not built: its own checks are skipped)"
    skipped=$((skipped + 2))
fi

# The row names bench_kernels.cpp times: the string literals of its run(...), fail_row(...) and
# group({...}) calls and of the fused-linear table (each name is written out once as a literal, so
# that report.py's pairing by name can be checked here).
python3 - "$here/bench/bench_kernels.cpp" >"$out/kernel_rows.txt" <<'PYTHON'
import re, sys
source = open(sys.argv[1]).read()
names = set()
for call in re.finditer(r'\b(?:run|fail_row)\(\s*((?:[^;"]|"[^"]*")*?)[,)]', source):
    names.update(re.findall(r'"([A-Za-z][A-Za-z0-9_]*)"', call.group(1)))
for group in re.finditer(r'\bgroup\(\{([^}]*)\}', source):
    names.update(re.findall(r'"([A-Za-z][A-Za-z0-9_]*)"', group.group(1)))
for pair in re.finditer(r'\{"([A-Za-z][A-Za-z0-9_]*)", kernels::LinearEpilogue', source):
    names.add(pair.group(1))
print("\n".join(sorted(names)))
PYTHON

if python3 -c "import torch" 2>/dev/null; then
    # Every row once on the CPU at a tiny shape: exit 0, and the same row names as bench_kernels (a
    # ':variant' row is PyTorch's alternative for one of them; index_check_targets has no PyTorch twin).
    python3 "$here/bench/torch_ops.py" "$out/torch_ops.json" --dry >"$out/torch_ops_dry.log" 2>&1
    status=$?
    if [ $status -ne 0 ]; then fail torch_ops_dry "exited with $status"
    elif ! python3 - "$out/torch_ops.json" "$out/kernel_rows.txt" >"$out/torch_ops_dry.check" 2>&1 <<'PYTHON'
import json, sys
torch_rows = json.load(open(sys.argv[1]))
ours = set(open(sys.argv[2]).read().split())
assert len(ours) >= 35, f"only {len(ours)} row names found in bench_kernels.cpp: {sorted(ours)}"
minipipe_only = {"index_check_targets"}
bases = {name.split(":")[0] for name in torch_rows}
assert not bases - ours, f"torch_ops rows that bench_kernels does not time: {sorted(bases - ours)}"
missing = ours - minipipe_only - bases
assert not missing, f"bench_kernels rows that torch_ops does not time: {sorted(missing)}"
# On the CPU only the mixed-dtype addmm (an overload PyTorch has on CUDA only) may fail; its
# alternative must run.
errors = {name: row["error"] for name, row in torch_rows.items() if "error" in row}
assert not set(errors) - {"gemm_wgrad_accum_bf16"}, f"rows failed: {errors}"
assert "ms" in torch_rows.get("gemm_wgrad_accum_bf16:mm_cast_add", {}), "gemm_wgrad_accum_bf16:mm_cast_add did not run"
print(f"{len(torch_rows)} rows; names match bench_kernels.cpp's {len(ours)}")
PYTHON
    then fail torch_ops_dry "$(cat "$out/torch_ops_dry.check")"
    else pass; fi
else
    echo "  (PyTorch is not importable: torch_ops.py --dry is not checked)"
    skipped=$((skipped + 1))
fi

# report.py and run_bench.sh with a stand-in bench_kernels writing what a GPU run would: every row
# of bench_kernels.cpp, one of them an error (cuBLASLt declining the fused GELU linear), then exit 1.
mkdir -p "$out/kbench" "$out/kbench_no_gpu"
python3 - "$out/kernel_rows.txt" "$out/fake_kernels.json" <<'PYTHON'
import json, sys
rows = {"_meta": {"device": "NVIDIA H100 80GB HBM3"}}
for name in open(sys.argv[1]).read().split():
    flops = 1e11 if name.startswith(("gemm", "linear", "attention")) else 0
    rows[name] = {"ms": 0.5, "bytes": 0 if flops else 1e9, "flops": flops,
                  "precision": "bf16" if "_bf16" in name else "tf32" if "_tf32" in name else "fp32"}
rows["linear_bias_gelu_fwd_bf16"] = {"ms": None, "error": "cuBLASLt has no algorithm for this epilogue",
                                     "bytes": 0, "flops": 0, "precision": "bf16"}
json.dump(rows, open(sys.argv[2], "w"))
PYTHON
cat >"$out/kbench/bench_kernels" <<STANDIN
#!/usr/bin/env bash
[ "\$1" = --json ] && cp "$out/fake_kernels.json" "\$2"
echo "bench_kernels: 1 row(s) did not run: linear_bias_gelu_fwd_bf16" >&2
exit 1
STANDIN
printf '#!/usr/bin/env bash\necho "bench_kernels: no GPU visible; the kernel benchmarks need one"\n' \
    >"$out/kbench_no_gpu/bench_kernels"
chmod +x "$out/kbench/bench_kernels" "$out/kbench_no_gpu/bench_kernels"
if [ -s "$out/torch_ops.json" ]; then
    # The dry run's PyTorch rows stand in for the GPU's: a ratio on every paired row, the alternatives,
    # PyTorch's own row error.
    python3 "$here/bench/report.py" "$out/fake_kernels.json" "$out/torch_ops.json" >"$out/report.log" 2>&1
    status=$?
    report_ok=1
    for line in "^device: NVIDIA H100" "^| copy_1GiB | 0.500 | 2000 GB/s | 100% of copy | [0-9.]* | [0-9.]*x |$" \
                "^| gemm_fc_bf16 | 0.500 | 200.0 TFLOP/s | 20% of bf16 peak | [0-9.]* | [0-9.]*x |$" \
                "^| linear_bias_gelu_fwd_bf16 | not run: cuBLASLt has no algorithm" \
                "^| adamw_gpt2_148_tensors vs PyTorch foreach | | | | [0-9.]* | [0-9.]*x |$" \
                "^| gemm_wgrad_accum_bf16 | 0.500 | .* | not run: NotImplementedError" \
                "^| index_check_targets | 0.500 | 2000 GB/s | 100% of copy | n/a | n/a |$"; do
        if ! grep -q -- "$line" "$out/report.log"; then report_ok=0; echo "---- report: no line matching '$line'"; fi
    done
    if [ $status -ne 0 ] || [ $report_ok = 0 ]; then
        failed=$((failed + 1)); failures+=(report_kernels); echo "---- report.py exit $status"; cat "$out/report.log"
    else pass; fi
else
    skipped=$((skipped + 1))
fi
# run_bench.sh (PyTorch without CUDA here: our figures alone): the table with the error row, then
# exit 1; with a bench_kernels that finds no GPU: exit 0 and no table.
(cd "$here" && bash bench/run_bench.sh "$out/kbench") >"$out/run_bench.log" 2>&1
status=$?
if [ $status -ne 1 ]; then
    fail run_bench_row_error "exit status $status, expected 1 (a row did not run)"; cat "$out/run_bench.log"
elif ! grep -q "^| linear_bias_gelu_fwd_bf16 | not run: cuBLASLt" "$out/run_bench.log" \
     || ! grep -q "^| layernorm_bwd_bf16 | 0.500 |" "$out/run_bench.log"; then
    fail run_bench_row_error "the table is missing rows"; cat "$out/run_bench.log"
else pass; fi
(cd "$here" && bash bench/run_bench.sh "$out/kbench_no_gpu") >"$out/run_bench_no_gpu.log" 2>&1
status=$?
if [ $status -ne 0 ]; then fail run_bench_no_gpu "exit status $status"; cat "$out/run_bench_no_gpu.log"
elif grep -q "^| " "$out/run_bench_no_gpu.log"; then fail run_bench_no_gpu "printed a table without results"
else pass; fi

echo "==== bench smoke test (CPU)"
printf '  %-28s ran %4d  passed %4d  skipped %4d  failed %4d\n' \
    "bench_gpt, kernel bench" $((passed + failed)) "$passed" "$skipped" "$failed"
rm -rf "$out"
if [ "$failed" -gt 0 ]; then echo "FAILED: ${failures[*]}"; exit 1; fi
