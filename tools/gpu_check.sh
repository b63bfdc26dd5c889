#!/usr/bin/env bash
# The one-shot GPU check: on a machine with a GPU (offline, held for minutes) it builds minipipe
# for the visible GPU, runs every test with the GPU visible, sanitizes the kernels, runs the
# communicator tests one GPU allows, the kernel and end-to-end benchmarks against PyTorch, and a
# short training run, each stage under its own timeout and all within one time budget. It leaves
# at most 8 files in OUTDIR: report.md (every figure, every failure) and one log per stage group.
#
#   tools/gpu_check.sh OUTDIR [STAGE ...]      (make gpu-check OUT=dir)
#
# Stages, in order: probe build tests sanitizer comm bench bench_gpt train (default: all).
# Without a GPU it writes a report saying so and exits 0 (CI runs that path). Exit status: 0 when
# every stage run passed, 1 otherwise. Environment:
#   MINIPIPE_GPU_CHECK_BUDGET_S   total seconds for all stages (default 540: under 9 minutes)
#   MINIPIPE_GPU_CHECK_FORCE=1    run the stages even without a GPU (the script's own self-test)
#   MINIPIPE_GPU_CHECK_TESTS      the unit-test binaries to run (default: every build/tests/test_*)
#   BUILD                         the build folder (default: build)
set -u
out=${1:?usage: tools/gpu_check.sh OUTDIR [probe build tests sanitizer comm bench bench_gpt train]}
shift
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
all_stages=(probe build tests sanitizer comm bench bench_gpt train)
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=("${all_stages[@]}")
for s in "${stages[@]}"; do
    [[ " ${all_stages[*]} " == *" $s "* ]] || { echo "gpu_check: unknown stage '$s' (stages: ${all_stages[*]})" >&2; exit 2; }
done
BUILD=${BUILD:-build}
budget=${MINIPIPE_GPU_CHECK_BUDGET_S:-540}
force=${MINIPIPE_GPU_CHECK_FORCE:-0}
started=$(date +%s)
report="$out/report.md"
# The logs (with report.md, 8 files at most: what the device tool brings back).
build_log="$out/build.log"; tests_log="$out/tests.log"; sanitizer_log="$out/sanitizer.log"
comm_log="$out/comm.log"; bench_log="$out/bench.log"; bench_gpt_log="$out/bench_gpt.log"; train_log="$out/train.log"
rm -f "$report" "$build_log" "$tests_log" "$sanitizer_log" "$comm_log" "$bench_log" "$bench_gpt_log" "$train_log"

cores=$(nproc 2>/dev/null || echo 2)
mpirun_flags=(--oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && mpirun_flags+=(--allow-run-as-root)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export MINIPIPE_COMM_TIMEOUT_S=${MINIPIPE_COMM_TIMEOUT_S:-60}
export PYTHONUNBUFFERED=1

# ---------------------------------------------------------------- report helpers
rows=()        # one summary line per stage
sections=$(mktemp)  # the details, after the table (a file: sections are added from pipelines)
trap 'rm -f "$sections"' EXIT
any_failed=0
add_row() {  # stage status seconds summary
    rows+=("| $1 | $2 | $3 | $4 |")
    printf 'gpu_check: %-10s %-7s %4s s  %s\n' "$1" "$2" "$3" "$4"
    [ "$2" = FAIL ] && any_failed=1
    return 0
}
add_section() {  # title, then the body on stdin
    { echo; echo "## $1"; echo; cat; } >>"$sections"
}
code_block() { echo '```'; cat; echo '```'; }
write_report() {
    {
        echo "# minipipe GPU check"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), total $(( $(date +%s) - started )) s of a ${budget} s budget"
        echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git status --porcelain 2>/dev/null | grep -v '^??')" ] && echo ' (with uncommitted changes)')"
        echo "- machine: ${gpu_line:-no GPU}; ${cores} CPU cores; $(uname -sr)"
        echo "- logs beside this file: build.log tests.log sanitizer.log comm.log bench.log bench_gpt.log train.log"
        echo
        echo "| stage | status | seconds | summary |"
        echo "|---|---|---|---|"
        for row in "${rows[@]}"; do echo "$row"; done
        cat "$sections"
    } >"$report"
}
remaining() { echo $(( budget - ($(date +%s) - started) )); }
# The timeout for a stage: its own cap, cut to what is left of the budget (minus a margin).
stage_limit() {  # cap
    local left=$(( $(remaining) - 5 ))
    (( left < $1 )) && echo "$left" || echo "$1"
}
wants() { [[ " ${stages[*]} " == *" $1 "* ]]; }
# Runs a stage function unless the budget is spent: stage name, minimum seconds, cap seconds.
run_stage() {
    local name=$1 minimum=$2 cap=$3
    wants "$name" || return 0
    if (( $(remaining) < minimum + 5 )); then
        add_row "$name" skipped 0 "not run: $(remaining) s left of the ${budget} s budget, needs at least ${minimum} s"
        return 0
    fi
    stage_t0=$(date +%s)
    limit=$(stage_limit "$cap")
    "stage_$name"
}
elapsed() { echo $(( $(date +%s) - stage_t0 )); }  # seconds since the current stage started
left_in_stage() { echo $(( limit - $(elapsed) - 5 )); }
# Runs a command with a timeout, appending its output to a log; returns its status (124: timed out).
run_logged() {  # log seconds command...
    local log=$1 seconds=$2; shift 2
    echo "\$ $*   (timeout ${seconds} s)" >>"$log"
    timeout -k 10 "$seconds" "$@" >>"$log" 2>&1
    local status=$?
    [ $status -eq 124 ] && echo "gpu_check: timed out after ${seconds} s" >>"$log"
    return $status
}
have_build() {  # stage: a binary the stage needs is missing -> a row saying so
    if [ ! -x "$2" ]; then add_row "$1" FAIL 0 "not run: $2 is missing (see the build stage)"; return 1; fi
}

# ---------------------------------------------------------------- is there a GPU?
gpu_line=""
gpu_arch=""
if command -v nvidia-smi >/dev/null 2>&1; then
    gpu_line=$(timeout 20 nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1)
    gpu_arch=$(echo "$gpu_line" | cut -d, -f2 | tr -d ' .')
    [[ "$gpu_arch" =~ ^[0-9]+$ ]] || gpu_arch=""
fi
if [ -z "$gpu_arch" ] && [ "$force" != 1 ]; then
    gpu_line=""
    add_row all skipped 0 "no GPU visible (nvidia-smi absent or lists none): nothing to check here"
    write_report
    echo "gpu_check: no GPU on this machine; report in $report"
    exit 0
fi
[ -z "$gpu_line" ] && gpu_line="no GPU (MINIPIPE_GPU_CHECK_FORCE=1: the stages run anyway)"
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}

# ---------------------------------------------------------------- 1. probe
stage_probe() {
    local lines=() missing=()
    found() {  # name, value (empty: missing)
        if [ -n "$2" ]; then lines+=("- ✓ $1: $2"); else lines+=("- ✗ $1: missing"); missing+=("$1"); fi
    }
    first_line() { timeout 20 bash -c "$1" 2>/dev/null | head -n1; }
    first_file() { ls $@ 2>/dev/null | head -n1; }
    header_version() {  # file, macro names... -> "2.28.3 (file)"
        [ -n "$1" ] || return 0
        local v="" m; for m in "${@:2}"; do v+="$(grep -m1 -oP "#define $m\s+\K[0-9]+" "$1")."; done
        echo "${v%.} ($1)"
    }
    found "GPU" "$gpu_line"
    found "nvcc" "$(first_line "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc) --version | grep -oP 'release \K[^,]+'")"
    found "mpicxx" "$(first_line 'mpicxx --showme:version 2>&1 || mpicxx --version')"
    found "mpirun" "$(first_line 'mpirun --version 2>&1')"
    found "NCCL" "$(header_version "$(first_file /usr/include/nccl.h /usr/local/cuda/include/nccl.h)" NCCL_MAJOR NCCL_MINOR NCCL_PATCH)"
    found "cuDNN" "$(header_version "$(first_file /usr/include/cudnn_version*.h /usr/include/x86_64-linux-gnu/cudnn_version*.h /usr/local/cuda/include/cudnn_version.h)" CUDNN_MAJOR CUDNN_MINOR CUDNN_PATCHLEVEL)"
    found "cuBLAS" "$(first_file /usr/local/cuda/lib64/libcublas.so* /usr/lib/x86_64-linux-gnu/libcublas.so*)"
    found "GoogleTest" "$(first_file /usr/include/gtest/gtest.h /usr/local/include/gtest/gtest.h)"
    found "nlohmann/json" "$(first_file .deps/include/nlohmann/json.hpp /usr/include/nlohmann/json.hpp /usr/local/include/nlohmann/json.hpp)"
    # The fused attention's headers (make deps puts them in .deps/include; carried with the tree).
    found "cudnn-frontend" "$(header_version "$(first_file .deps/include/cudnn_frontend_version.h /usr/include/cudnn_frontend_version.h /usr/local/include/cudnn_frontend_version.h)" CUDNN_FRONTEND_MAJOR_VERSION CUDNN_FRONTEND_MINOR_VERSION CUDNN_FRONTEND_PATCH_VERSION)"
    found "OpenBLAS" "$(first_line 'pkg-config --modversion openblas')"
    found "PyTorch" "$(first_line "python3 -c 'import torch; print(torch.__version__, \"cuda\", torch.version.cuda, \"GPU visible\" if torch.cuda.is_available() else \"NO GPU VISIBLE\")'")"
    found "compute-sanitizer" "$(first_line "$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer) --version | grep -i version")"
    printf '%s\n' "${lines[@]}" | add_section "Probe"
    printf '%s\n' "${lines[@]}" >>"$build_log"
    if [ ${#missing[@]} -eq 0 ]; then add_row probe pass "$(elapsed)" "everything present"
    else add_row probe note "$(elapsed)" "missing: ${missing[*]} (the stages that need them say so)"; fi
}

# ---------------------------------------------------------------- 2. build
stage_build() {
    # Never `deps` (offline): DEPS=0 is implied by building `all` directly.
    run_logged "$build_log" "$limit" make -j"$cores" BUILD="$BUILD" ${gpu_arch:+CUDA_ARCH=$gpu_arch} all
    local status=$? seconds; seconds=$(elapsed)
    grep -E '^  [✓✗] ' "$build_log" | code_block | add_section "Build probes (make)"
    if [ $status -eq 0 ]; then
        add_row build pass "$seconds" "make -j$cores all${gpu_arch:+ for sm_$gpu_arch}"
    else
        { grep -n -m 20 -E 'error|Error|\*\*\*' "$build_log" || tail -n 20 "$build_log"; } | code_block | add_section "Build errors (first 20)"
        add_row build FAIL "$seconds" "make failed (exit $status$( [ $status -eq 124 ] && echo ', timed out')): see build.log"
    fi
}

# ---------------------------------------------------------------- 3. unit tests
stage_tests() {
    local binaries; binaries=${MINIPIPE_GPU_CHECK_TESTS:-$(ls "$BUILD"/tests/test_* 2>/dev/null | tr '\n' ' ')}
    if [ -z "$binaries" ]; then add_row tests FAIL 0 "no test binaries in $BUILD/tests (see the build stage)"; return; fi
    local count; count=$(echo $binaries | wc -w)
    # Each binary gets a share of the stage's time, but at least 60 s.
    local each=$(( limit / count )); (( each < 60 )) && each=60
    MP_TESTS_SHOW_SKIPPED=1 MP_TESTS_RERUN_FAILED=1 MP_TESTS_TIMEOUT_S=$each \
        run_logged "$tests_log" "$limit" bash tests/run_tests.sh $binaries
    local status=$? seconds; seconds=$(elapsed)
    sed -n '/^==== test summary/,$p' "$tests_log" | code_block | add_section "Unit tests"
    # The fused attention (cuDNN SDPA) against the composed one: its own line, since a build
    # without cudnn-frontend skips those tests (a finding here: .deps was not carried).
    {
        grep -E '^  test_attention_fused ' "$tests_log" | tail -n1 | sed 's/^ *//' || true
        grep -A8 -E '^  test_attention_fused ' "$tests_log" | grep -E 'skipped:.*AttentionFused' | head -n 8 || true
        grep -E '^  [✓✗] cudnn-frontend' "$build_log" 2>/dev/null | tail -n1 || true
    } | code_block | add_section "Fused attention (cuDNN SDPA vs the composed attention in float64)"
    local all; all=$(grep -E '^  ALL ' "$tests_log" | tail -n1 | tr -s ' ' | sed 's/^ ALL //')
    local skipped; skipped=$(echo "$all" | grep -oP 'skipped \K[0-9]+')
    if [ $status -ne 0 ]; then
        sed -n '/^---- /,/^==== test summary/p' "$tests_log" | grep -v '^==== test summary' | head -n 150 | code_block | add_section "Unit test failures (with the CUDA_LAUNCH_BLOCKING=1 reruns)"
        add_row tests FAIL "$seconds" "${all:-no summary (exit $status)}"
    elif [ "${skipped:-1}" != 0 ]; then
        add_row tests FAIL "$seconds" "${all}: every test must run on a GPU machine (skipped ones named below)"
    else
        add_row tests pass "$seconds" "$all"
    fi
}

# ---------------------------------------------------------------- 4. compute-sanitizer
# memcheck over every CUDA test of the kernel families (a test with "Cuda" in its name); racecheck
# (shared-memory hazards) over the kernels that reduce through shared memory: elementwise's sums and
# norms (the multi-tensor norm too), layernorm, softmax, cross-entropy (each also in bfloat16), and
# embedding's backward. A kernel family that adds a shared-memory reduction adds its tests here; the
# self-test (tests/run_gpu_check_selftest.sh) checks every pattern still names a test.
RACECHECK_FILTER='ElementwiseCuda.Sum*:ElementwiseCuda.GlobalL2Norm*:ElementwiseCuda.ListNorm*:LayerNormCuda.*:LayerNormCudaBf16.*:SoftmaxCuda.*:SoftmaxCudaBf16.*:CausalSoftmaxCuda.*:CrossEntropyCuda.MatchesCpu*:CrossEntropyCudaBf16.*:CrossEntropyFusedCuda.*:EmbeddingCuda.Backward*'
stage_sanitizer() {
    local sanitizer
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    if [ -z "$sanitizer" ]; then add_row sanitizer skipped 0 "compute-sanitizer is not installed"; return; fi
    local binaries=() bin
    for bin in "$BUILD"/tests/test_*; do
        [ -x "$bin" ] || continue
        "$bin" --gtest_list_tests --gtest_filter='*Cuda*' 2>/dev/null | grep -q '^  ' && binaries+=("$bin")
    done
    if [ ${#binaries[@]} -eq 0 ]; then add_row sanitizer FAIL 0 "no test binary has CUDA tests (see the build stage)"; return; fi
    local results=() errors=0 each=$(( limit * 2 / 3 / ${#binaries[@]} ))
    (( each < 20 )) && each=20
    for bin in "${binaries[@]}"; do
        local name; name=$(basename "$bin")
        local left; left=$(left_in_stage)
        if (( left < 10 )); then results+=("$name memcheck: not run (stage time spent)"); continue; fi
        (( each < left )) || each=$left
        run_logged "$sanitizer_log" "$each" "$sanitizer" --tool memcheck --error-exitcode 99 --print-limit 20 \
            "$bin" --gtest_filter='*Cuda*' --gtest_brief=1
        case $? in
            0) results+=("$name memcheck: clean") ;;
            124) results+=("$name memcheck: timed out after ${each} s") ;;
            99) results+=("$name memcheck: ERRORS (see sanitizer.log)"); errors=1 ;;
            *) results+=("$name memcheck: the tests failed under the sanitizer (see sanitizer.log)"); errors=1 ;;
        esac
    done
    for bin in "${binaries[@]}"; do
        local name; name=$(basename "$bin")
        "$bin" --gtest_list_tests --gtest_filter="$RACECHECK_FILTER" 2>/dev/null | grep -q '^  ' || continue
        local left; left=$(left_in_stage)
        if (( left < 10 )); then results+=("$name racecheck: not run (stage time spent)"); continue; fi
        run_logged "$sanitizer_log" "$left" "$sanitizer" --tool racecheck --error-exitcode 99 --print-limit 20 \
            "$bin" --gtest_filter="$RACECHECK_FILTER" --gtest_brief=1
        case $? in
            0) results+=("$name racecheck: clean") ;;
            124) results+=("$name racecheck: timed out") ;;
            99) results+=("$name racecheck: HAZARDS (see sanitizer.log)"); errors=1 ;;
            *) results+=("$name racecheck: the tests failed under the sanitizer (see sanitizer.log)"); errors=1 ;;
        esac
    done
    local seconds; seconds=$(elapsed)
    {
        printf -- '- %s\n' "${results[@]}"
        if [ $errors -ne 0 ]; then echo; grep -E -m 40 '=========\s+(Invalid|Race|Error|Uninitialized|Program hit)|^\s+at .*0x' "$sanitizer_log" | code_block; fi
    } | add_section "compute-sanitizer"
    local clean; clean=$(printf '%s\n' "${results[@]}" | grep -c ': clean$')
    if [ $errors -ne 0 ]; then add_row sanitizer FAIL "$seconds" "errors found: $(printf '%s\n' "${results[@]}" | grep -c -E 'ERRORS|HAZARDS|failed') runs"
    elif printf '%s\n' "${results[@]}" | grep -q -E 'timed out|not run'; then add_row sanitizer partial "$seconds" "$clean runs clean, the rest out of time (listed below)"
    else add_row sanitizer pass "$seconds" "$clean runs clean (memcheck on every CUDA test, racecheck on the reductions)"; fi
}

# ---------------------------------------------------------------- 5. communicators
# One GPU: several ranks share it over MPI (CUDA tensors through pinned staging; each rank also
# gets a one-rank NCCL communicator: self send/recv, the reversed-tag batch); one rank alone
# makes the world communicator NCCL-capable. NCCL across ranks needs one GPU per rank.
stage_comm() {
    local results=() failed=0 np bin
    for bin in "$BUILD"/tests/mpi/test_comm "$BUILD"/tests/mpi/test_pipeline; do
        [ -x "$bin" ] || { results+=("$(basename "$bin"): missing (see the build stage)"); failed=1; continue; }
        for np in 1 2; do
            local left; left=$(left_in_stage)
            if (( left < 10 )); then results+=("$(basename "$bin") np $np: not run (stage time spent)"); continue; fi
            local log; log=$(mktemp)
            timeout -k 10 "$left" mpirun "${mpirun_flags[@]}" -x OMP_WAIT_POLICY -x MINIPIPE_COMM_TIMEOUT_S \
                -np "$np" "$bin" --gtest_brief=0 --gtest_color=no >"$log" 2>&1
            local status=$?
            { echo "\$ mpirun -np $np $bin   (exit $status)"; cat "$log"; } >>"$comm_log"
            local counts; counts=$(grep -oP '^\[==========\] \K[0-9]+(?= tests? from .* ran)' "$log" | tail -n1)
            local skipped; skipped=$(grep -oP '^\[  SKIPPED \] [A-Za-z0-9_/.]+$' "$log" | sed 's/.*\] //' | sort -u | paste -sd, -)
            local failures; failures=$(grep -oP '^\[  FAILED  \] [A-Za-z0-9_/.]+$' "$log" | sed 's/.*\] //' | sort -u | paste -sd, -)
            local line="$(basename "$bin") np $np: ${counts:-0} ran"
            [ -n "$skipped" ] && line+="; skipped: $skipped"
            if [ $status -ne 0 ]; then line+="; FAILED (exit $status${failures:+: $failures})"; failed=1; fi
            results+=("$line")
            rm -f "$log"
        done
    done
    local seconds; seconds=$(elapsed)
    {
        printf -- '- %s\n' "${results[@]}"
        echo
        echo "Expected skips on one GPU: at np 1 the tests that need two ranks; NCCL across ranks (one GPU per" \
             "rank) at np 2; the data-parallel pipeline test (exactly 4 ranks). Every other skip is a finding."
        if [ $failed -ne 0 ]; then
            grep -E -B2 -A8 'Failure|^\[rank [0-9]+\]|error:|timed out' "$comm_log" | head -n 80 | code_block
        fi
    } | add_section "Communicators (mpirun on one GPU)"
    if [ $failed -ne 0 ]; then add_row comm FAIL "$seconds" "see below and comm.log"
    else add_row comm pass "$seconds" "test_comm and test_pipeline at np 1 and 2 on the GPU"; fi
}

# ---------------------------------------------------------------- 6. kernel benchmarks
stage_bench() {
    run_logged "$bench_log" "$limit" make --no-print-directory BUILD="$BUILD" ${gpu_arch:+CUDA_ARCH=$gpu_arch} bench
    local status=$? seconds; seconds=$(elapsed)
    grep -v -E '^(\$ |g\+\+|nvcc|ar |minipipe build probes|  [✓✗] )' "$bench_log" | tail -n 60 | code_block | add_section "Kernel benchmarks (make bench; ratios against PyTorch eager in the same run)"
    if [ $status -eq 0 ]; then add_row bench pass "$seconds" "table below"
    else add_row bench FAIL "$seconds" "make bench exit $status$( [ $status -eq 124 ] && echo ' (timed out)')"; fi
}

# ---------------------------------------------------------------- 7. end-to-end GPT-2 benchmark
stage_bench_gpt() {
    if [ ! -f bench/run_bench_gpt.sh ]; then add_row bench_gpt FAIL 0 "bench/run_bench_gpt.sh is missing"; return; fi
    have_build bench_gpt "$BUILD/bench/bench_gpt" || return
    local results=() failed=0 left status
    # bf16 first (the issue's bar), then TF32 and exact fp32, batch 8 and 16 each: minipipe and PyTorch
    # eager; then torch.compile in bf16, last (compiling is slow: the stage's timeout cuts it first).
    left=$(left_in_stage)
    run_logged "$bench_gpt_log" "$left" bash bench/run_bench_gpt.sh "$BUILD" --precision bf16,tf32,fp32 \
        --compile=bf16 --batch 8,16 --warmup 2 --steps 5
    status=$?
    if [ $status -eq 0 ]; then
        results+=("bf16, tf32, fp32 and torch.compile bf16: done")
    else
        local timed_out=""; [ $status -eq 124 ] && timed_out=", timed out: the rows measured before it follow"
        results+=("FAILED (exit $status$timed_out)")
        failed=1
    fi
    if [ $status -eq 124 ]; then  # join what finished before the timeout
        local done_files
        done_files=$(ls "$BUILD"/bench/minipipe_gpt_*.json "$BUILD"/bench/torch_gpt_*.json 2>/dev/null)
        # shellcheck disable=SC2086  # one path per word: build paths have no spaces
        [ -n "$done_files" ] && python3 bench/report_gpt.py $done_files >>"$bench_gpt_log" 2>&1
    fi
    local seconds; seconds=$(elapsed)
    {
        printf -- '- %s\n' "${results[@]}"
        echo
        grep -E -e '^(==== precision|machine:|model: [0-9]|flops per token:|peak:|[0-9]+ warm-up|\|)' \
            -e '^(PyTorch optimizer|run_bench_gpt:|bench_gpt:|torch_gpt:)' "$bench_gpt_log"
    } | add_section "GPT-2 124M training, minipipe against PyTorch eager and torch.compile (same run)"
    if [ $failed -ne 0 ]; then add_row bench_gpt FAIL "$seconds" "see below and bench_gpt.log"
    else add_row bench_gpt pass "$seconds" "bf16, tf32, fp32, torch.compile bf16 at batch 8 and 16: tables below"; fi
}

# ---------------------------------------------------------------- 8. examples and a training run
# The examples' smoke test (GPU visible, so the trainers run on it), then train_gpt for 100 steps
# on one rank on the GPU: the loss must fall.
stage_train() {
    local results=() failed=0
    have_build train "$BUILD/examples/train_gpt" || return
    run_logged "$train_log" $(( limit * 2 / 3 )) bash tests/run_example_smoke.sh "$BUILD"
    local status=$?
    if [ $status -eq 0 ]; then results+=("example smoke test on the GPU: passed")
    else results+=("example smoke test on the GPU: FAILED (exit $status)"); failed=1; fi
    local left; left=$(left_in_stage)
    local run_log; run_log=$(mktemp)
    timeout -k 10 "$(( left > 10 ? left : 10 ))" mpirun "${mpirun_flags[@]}" -np 1 "$BUILD/examples/train_gpt" \
        --set steps=100 --set pipeline.stages=1 --set device=cuda --set log.every=10 --set checkpoint.every=0 \
        --set checkpoint.dir="$BUILD/gpu_check_checkpoint" --set trace.path= --set trace.svg= >"$run_log" 2>&1
    status=$?
    { echo "\$ mpirun -np 1 train_gpt --set steps=100 --set device=cuda ...   (exit $status)"; cat "$run_log"; } >>"$train_log"
    local first last
    first=$(grep -oP '^step +0 \| loss \K[0-9.eE+-]+' "$run_log" | head -n1)
    last=$(grep -oP '^final loss \K[0-9.eE+-]+' "$run_log" | tail -n1)
    if [ $status -ne 0 ]; then results+=("train_gpt 100 steps on cuda: FAILED (exit $status)"); failed=1
    elif [ -z "$first" ] || [ -z "$last" ]; then results+=("train_gpt 100 steps on cuda: no loss in the log"); failed=1
    elif python3 -c "import math,sys; a,b=float('$first'),float('$last'); sys.exit(0 if math.isfinite(b) and b < a else 1)"; then
        results+=("train_gpt 100 steps on cuda: loss $first -> $last")
    else results+=("train_gpt 100 steps on cuda: the loss did not fall ($first -> $last)"); failed=1; fi
    local seconds; seconds=$(elapsed)
    {
        printf -- '- %s\n' "${results[@]}"
        echo
        grep -E '^(step|final loss|layout|minipipe)' "$run_log" | head -n 20 | code_block
        [ $failed -ne 0 ] && tail -n 30 "$train_log" | code_block
    } | add_section "Examples and training on the GPU"
    rm -f "$run_log"
    if [ $failed -ne 0 ]; then add_row train FAIL "$seconds" "see below and train.log"
    else add_row train pass "$seconds" "${results[1]#*: }"; fi
}

stage_t0=$started
limit=0
run_stage probe 5 30
run_stage build 30 300
run_stage tests 30 150
run_stage sanitizer 30 100
run_stage comm 20 80
run_stage bench 20 80
run_stage bench_gpt 40 170
run_stage train 30 120
write_report
echo "gpu_check: report in $report"
exit $any_failed
