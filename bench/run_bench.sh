#!/usr/bin/env bash
# `make bench`: times our kernels, then PyTorch eager on the same GPU in the same run (when
# torch imports), and prints the joined table. Results go to build/bench/*.json.
set -euo pipefail
bench_dir=$1
rm -f "$bench_dir"/*.json
"$bench_dir/bench_kernels" --json "$bench_dir/minipipe_kernels.json"
[ -s "$bench_dir/minipipe_kernels.json" ] || exit 0  # no GPU: bench_kernels said so
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    python3 bench/torch_ops.py "$bench_dir/torch_ops.json"
    python3 bench/report.py "$bench_dir/minipipe_kernels.json" "$bench_dir/torch_ops.json"
else
    echo "bench: PyTorch with CUDA is not importable here; printing our figures alone"
    python3 bench/report.py "$bench_dir/minipipe_kernels.json"
fi
