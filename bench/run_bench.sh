#!/usr/bin/env bash
# `make bench`: times our kernels, then PyTorch eager on the same GPU in the same run (when
# torch imports), and prints the joined table. Results go to build/bench/*.json.
# MINIPIPE_BENCH_ONLY=SUBSTRING times only the rows whose name contains it (both sides; the copy
# row always runs), e.g. MINIPIPE_BENCH_ONLY=bf16 make bench. A row that could not run is in the
# table with its error; the exit status is then non-zero, after the table.
set -euo pipefail
bench_dir=$1
only=${MINIPIPE_BENCH_ONLY:-}
rm -f "$bench_dir"/*.json
status=0
"$bench_dir/bench_kernels" --json "$bench_dir/minipipe_kernels.json" ${only:+--only "$only"} || status=$?
[ -s "$bench_dir/minipipe_kernels.json" ] || exit $status  # no GPU (bench_kernels said so), or no results
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    python3 bench/torch_ops.py "$bench_dir/torch_ops.json" ${only:+--only "$only"} || status=$?
fi
if [ -s "$bench_dir/torch_ops.json" ]; then
    python3 bench/report.py "$bench_dir/minipipe_kernels.json" "$bench_dir/torch_ops.json"
else
    echo "bench: PyTorch with CUDA is not importable here (or wrote nothing); printing our figures alone"
    python3 bench/report.py "$bench_dir/minipipe_kernels.json"
fi
exit $status
