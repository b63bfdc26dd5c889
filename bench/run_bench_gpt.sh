#!/usr/bin/env bash
# The end-to-end GPT-2 training benchmark: bench_gpt, then PyTorch eager on the same device in the
# same run (bench/torch_gpt.py, when torch imports), then one joined table (bench/report_gpt.py).
# Usage: run_bench_gpt.sh BUILD_DIR [bench_gpt options, e.g. --batch 8,16 --precision tf32 --device cpu]
# The options go to both programs (they take the same ones; --json is set here). PyTorch runs with
# attention "math" (explicit masked softmax, as minipipe) and, on a GPU, "sdpa" too; set
# TORCH_GPT_ATTENTION="math" (or "sdpa", or "math sdpa") to choose. Results: BUILD_DIR/bench/*gpt*.json.
set -uo pipefail
# OpenMP threads that sleep when idle instead of spinning: with spinning, OpenMP's and OpenBLAS's
# threads fight over a few busy cores and CPU step times swing 3-10x (no effect on GPU timings).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
build=${1:?usage: run_bench_gpt.sh BUILD_DIR [bench_gpt options]}
shift
here=$(cd "$(dirname "$0")" && pwd)
bench=$build/bench/bench_gpt
[ -x "$bench" ] || { echo "run_bench_gpt: $bench not found: build it with make $bench"; exit 1; }
out_dir=$build/bench
ours=$out_dir/minipipe_gpt.json
rm -f "$ours" "$out_dir"/torch_gpt_*.json

"$bench" "$@" --json "$ours"
status=$?
if [ ! -s "$ours" ]; then  # no GPU (bench_gpt said so and exited 0), or it failed before any batch
    exit $status
fi
[ $status -eq 0 ] || echo "run_bench_gpt: bench_gpt exited with $status; its figures follow all the same"

on_cuda=$(python3 -c "import json, sys; print(0 if json.load(open(sys.argv[1]))['device'].startswith('cpu') else 1)" "$ours")
if [ "$on_cuda" = 1 ]; then
    torch_check="import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    torch_device=(--device cuda)
    attentions=${TORCH_GPT_ATTENTION:-math sdpa}
else
    torch_check="import torch"
    torch_device=(--device cpu)
    attentions=${TORCH_GPT_ATTENTION:-math}
fi

torch_files=()
if python3 -c "$torch_check" 2>/dev/null; then
    for attention in $attentions; do
        file=$out_dir/torch_gpt_$attention.json
        # The same options; the device last so it matches the one bench_gpt ran on.
        python3 "$here/torch_gpt.py" "$@" --attention "$attention" "${torch_device[@]}" --json "$file" || status=1
        [ -s "$file" ] && torch_files+=("$file")
    done
else
    if [ "$on_cuda" = 1 ]; then
        echo "run_bench_gpt: PyTorch with CUDA is not importable here; printing minipipe's figures alone"
    else
        echo "run_bench_gpt: PyTorch is not importable here; printing minipipe's figures alone"
    fi
fi
echo
python3 "$here/report_gpt.py" "$ours" "${torch_files[@]}" || status=1
exit $status
