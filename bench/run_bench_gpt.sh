#!/usr/bin/env bash
# The end-to-end GPT-2 training benchmark: for each precision, bench_gpt, then PyTorch eager on the
# same device in the same run (bench/torch_gpt.py, when torch imports); then torch.compile if asked;
# then one joined table over all of them (bench/report_gpt.py).
#
# Usage: run_bench_gpt.sh BUILD_DIR [--precision P[,P...]] [--compile[=P[,P...]]] [bench_gpt options]
#   --precision   fp32, tf32, bf16 or a list (default fp32), run in the order given
#   --compile     torch.compile rows too, for every listed precision (or only for those after '='),
#                 after all the minipipe and eager rows: compiling is slow, a timeout cuts it first
# The other options (--batch 8,16 --steps 5 --device cpu ...) go to both programs (they take the same
# ones; --json is set here). PyTorch eager runs with attention "math" (explicit masked softmax, as
# minipipe) and, on a GPU, "sdpa" too: TORCH_GPT_ATTENTION="math", "sdpa" or "math sdpa" chooses.
# torch.compile runs one attention: TORCH_GPT_COMPILE_ATTENTION (default sdpa on a GPU, math on the
# CPU), with TORCH_GPT_COMPILE_BACKEND (default inductor; the smoke test's "eager" only traces).
# Results: BUILD_DIR/bench/minipipe_gpt_<precision>.json and torch_gpt_<precision>_<kind>.json.
set -uo pipefail
# OpenMP threads that sleep when idle instead of spinning: with spinning, OpenMP's and OpenBLAS's
# threads fight over a few busy cores and CPU step times swing 3-10x (no effect on GPU timings).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
build=${1:?usage: run_bench_gpt.sh BUILD_DIR [--precision P[,P...]] [--compile[=P,...]] [bench_gpt options]}
shift
here=$(cd "$(dirname "$0")" && pwd)
bench=$build/bench/bench_gpt
[ -x "$bench" ] || { echo "run_bench_gpt: $bench not found: build it with make $bench"; exit 1; }

# This script's own options; the rest go to bench_gpt and torch_gpt.py alike.
precisions=fp32
compile_precisions=""
passed=()
while [ $# -gt 0 ]; do
    case $1 in
        --precision) [ $# -ge 2 ] || { echo "run_bench_gpt: --precision needs a value"; exit 2; }
                     precisions=$2; shift 2 ;;
        --precision=*) precisions=${1#*=}; shift ;;
        --compile) compile_precisions=all; shift ;;
        --compile=*) compile_precisions=${1#*=}; shift ;;
        *) passed+=("$1"); shift ;;
    esac
done
IFS=, read -r -a precision_list <<<"$precisions"
[ "$compile_precisions" = all ] && compile_precisions=$precisions
IFS=, read -r -a compile_list <<<"$compile_precisions"
for p in "${precision_list[@]}" "${compile_list[@]}"; do
    case $p in
        fp32|tf32|bf16) ;;
        *) echo "run_bench_gpt: precision must be fp32, tf32 or bf16, got '$p'"; exit 2 ;;
    esac
done
[ ${#precision_list[@]} -gt 0 ] || { echo "run_bench_gpt: --precision needs at least one precision"; exit 2; }

out_dir=$build/bench
rm -f "$out_dir"/minipipe_gpt*.json "$out_dir"/torch_gpt_*.json  # one run, one table: no stale rows
status=0
files=()
torch_checked=""  # "", yes or no: whether PyTorch (with CUDA, on a GPU) imports; asked once
on_cuda=""

# PyTorch on the device bench_gpt ran on; sets torch_checked, torch_device and the attention lists.
check_torch() {
    [ -n "$torch_checked" ] && return
    local torch_check="import torch"
    if [ "$on_cuda" = 1 ]; then
        torch_check="import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
        torch_device=(--device cuda)
        attentions=${TORCH_GPT_ATTENTION:-math sdpa}
        compile_attention=${TORCH_GPT_COMPILE_ATTENTION:-sdpa}
    else
        torch_device=(--device cpu)
        attentions=${TORCH_GPT_ATTENTION:-math}
        compile_attention=${TORCH_GPT_COMPILE_ATTENTION:-math}
    fi
    if python3 -c "$torch_check" 2>/dev/null; then torch_checked=yes
    else
        torch_checked=no
        echo "run_bench_gpt: PyTorch$( [ "$on_cuda" = 1 ] && echo ' with CUDA') is not importable here;" \
             "printing minipipe's figures alone"
    fi
}

for precision in "${precision_list[@]}"; do
    echo "==== precision $precision: minipipe"
    ours=$out_dir/minipipe_gpt_$precision.json
    "$bench" "${passed[@]}" --precision "$precision" --json "$ours"
    bench_status=$?
    if [ ! -s "$ours" ]; then
        [ $bench_status -eq 0 ] && exit $status  # no GPU: bench_gpt said so and exited 0; nothing to compare
        status=$bench_status  # it failed before any batch: the next precision may still run
        continue
    fi
    files+=("$ours")
    if [ $bench_status -ne 0 ]; then
        echo "run_bench_gpt: bench_gpt exited with $bench_status; its figures follow all the same"
        status=1
    fi
    if [ -z "$on_cuda" ]; then
        on_cuda=$(python3 -c "import json, sys
print(0 if json.load(open(sys.argv[1]))['device'].startswith('cpu') else 1)" "$ours")
    fi
    check_torch
    [ "$torch_checked" = yes ] || continue
    for attention in $attentions; do
        echo "==== precision $precision: PyTorch eager, attention $attention"
        file=$out_dir/torch_gpt_${precision}_$attention.json
        # The same options; the device last so it matches the one bench_gpt ran on.
        python3 "$here/torch_gpt.py" "${passed[@]}" --precision "$precision" --attention "$attention" \
            "${torch_device[@]}" --json "$file" || status=1
        [ -s "$file" ] && files+=("$file")
    done
done

if [ ${#compile_list[@]} -gt 0 ] && [ "$torch_checked" = yes ]; then
    for precision in "${compile_list[@]}"; do
        echo "==== precision $precision: torch.compile, attention $compile_attention"
        file=$out_dir/torch_gpt_${precision}_compile.json
        # torch_gpt.py exits 0 when compiling is not possible here (the reason is in its rows).
        python3 "$here/torch_gpt.py" "${passed[@]}" --precision "$precision" --attention "$compile_attention" \
            --compile --compile-backend "${TORCH_GPT_COMPILE_BACKEND:-inductor}" "${torch_device[@]}" \
            --json "$file" || status=1
        [ -s "$file" ] && files+=("$file")
    done
fi

[ ${#files[@]} -gt 0 ] || exit $status
echo
python3 "$here/report_gpt.py" "${files[@]}" || status=1
exit $status
