#!/usr/bin/env bash
# minipipe against PyTorch eager on the CPU, side by side: the same GPT, shapes and thread count,
# the two programs alternating (minipipe, PyTorch, minipipe, ...) for several rounds so that load
# from other processes falls on both alike; then a table of tokens/s per round, the ratio of the
# medians, and the machine. Builds nothing: bench_gpt must be built (make BUILD_DIR/bench/bench_gpt).
#
# Usage: cpu_vs_torch.sh [BUILD_DIR] [--rounds N] [--threads N] [other bench_gpt / torch_gpt.py options]
#   BUILD_DIR   where bench/bench_gpt is (default build)
#   --rounds    rounds of the pair (default 5)
#   --threads   CPU threads of each program (default 2)
# The default shape: --vocab 256 --context 128 --layers 4 --channels 128 --heads 4
# --batch 16 (10 timed steps after 3 warm-up); options given after it (--batch 8, --steps 20, ...) go
# to both programs and override it; --tiny replaces it (the smoke test). Each program runs as
# bench/run_bench_gpt.sh runs it (bench_gpt; torch_gpt.py with attention "math", minipipe's), with
# OMP_WAIT_POLICY=passive unless set. Results: BUILD_DIR/bench/cpu_vs_torch/round<i>_{minipipe,torch}.json;
# the round with the median ratio is also printed as bench/report_gpt.py's full table.
set -uo pipefail
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # sleeping idle threads, as run_bench_gpt.sh
here=$(cd "$(dirname "$0")" && pwd)
build=build
if [ $# -gt 0 ] && [[ $1 != --* ]]; then build=$1; shift; fi
bench=$build/bench/bench_gpt
[ -x "$bench" ] || { echo "cpu_vs_torch: $bench not found: build it with make $bench"; exit 1; }
python3 -c "import torch" 2>/dev/null || { echo "cpu_vs_torch: PyTorch is not importable here"; exit 1; }

rounds=5
threads=2
shape=(--vocab 256 --context 128 --layers 4 --channels 128 --heads 4 --batch 16)
passed=()
while [ $# -gt 0 ]; do
    case $1 in
        --rounds|--threads)
            [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "cpu_vs_torch: $1 needs a positive integer"; exit 2; }
            [ "$1" = --rounds ] && rounds=$2 || threads=$2
            shift 2 ;;
        --tiny) shape=(); passed+=("$1"); shift ;;
        --device*|--json*|--precision*) echo "cpu_vs_torch: $1 is set by this script (cpu, fp32)"; exit 2 ;;
        *) passed+=("$1"); shift ;;
    esac
done
options=("${shape[@]}" "${passed[@]}" --device cpu --threads "$threads" --precision fp32)

out=$build/bench/cpu_vs_torch
rm -rf "$out" && mkdir -p "$out"
status=0
for round in $(seq "$rounds"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "==== round $round of $rounds (load average $load): minipipe"
    "$bench" "${options[@]}" --json "$out/round${round}_minipipe.json" >"$out/round${round}_minipipe.log" 2>&1 \
        || { echo "cpu_vs_torch: bench_gpt failed; its log:"; tail -n 20 "$out/round${round}_minipipe.log"; exit 1; }
    grep '^batch' "$out/round${round}_minipipe.log"
    echo "==== round $round of $rounds: PyTorch eager"
    python3 "$here/torch_gpt.py" "${options[@]}" --attention math --json "$out/round${round}_torch.json" \
        >"$out/round${round}_torch.log" 2>&1 \
        || { echo "cpu_vs_torch: torch_gpt.py failed; its log:"; tail -n 20 "$out/round${round}_torch.log"; exit 1; }
    grep '^batch' "$out/round${round}_torch.log"
    echo "$load" >"$out/round${round}_load.txt"
done

echo
python3 - "$out" "$rounds" <<'PYTHON' || status=1
import json, os, platform, statistics, sys

out, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        model = fields.get("model name\t", "").strip()
        family, number = fields.get("cpu family\t", "").strip(), fields.get("model\t\t", "").strip()
        return f"{model} (family {family}, model {number})" if family else model
    except OSError:
        return platform.processor() or "unknown CPU"

rows = []
for i in range(1, rounds + 1):
    ours, theirs = load(f"round{i}_minipipe.json"), load(f"round{i}_torch.json")
    with open(os.path.join(out, f"round{i}_load.txt")) as f:
        load_average = f.read().strip()
    rows.append((i, ours, theirs, load_average))
first_ours, first_theirs = rows[0][1], rows[0][2]
model = first_ours["model"]
print(f"machine: {cpu_model()}, {os.cpu_count()} cores; {platform.system()} {platform.release()}")
print(f"minipipe: {first_ours['device']}; PyTorch {first_theirs.get('torch_version')} eager, "
      f"{first_theirs['device']}, attention math")
print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
      f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
print(f"model: {model['layers']} layers, {model['heads']} heads, {model['channels']} channels, context "
      f"{model['context']}, vocab {model['vocab']}, {first_ours['parameters']} parameters; fp32; "
      f"{first_ours['warmup_steps']} warm-up + {first_ours['timed_steps']} timed steps (the median step)")
print()
for batch in sorted({run["batch"] for _, ours, _, _ in rows for run in ours["runs"]}):
    def tokens(result):
        run = next((r for r in result["runs"] if r["batch"] == batch and "error" not in r), None)
        return run["tokens_per_s"] if run else None
    print(f"batch {batch}: minipipe and PyTorch eager alternating, one process each")
    print("| round | load average before | minipipe tokens/s | PyTorch eager tokens/s | minipipe / PyTorch |")
    print("|---|---|---|---|---|")
    mine, theirs, ratios = [], [], []
    for i, ours, torch_result, load_average in rows:
        a, b = tokens(ours), tokens(torch_result)
        if a is None or b is None:
            print(f"| {i} | {load_average} | {a or 'failed'} | {b or 'failed'} | |")
            continue
        mine.append(a), theirs.append(b), ratios.append(a / b)
        print(f"| {i} | {load_average} | {a:.0f} | {b:.0f} | {a / b:.2f}x |")
    if not ratios:
        sys.exit(1)
    print(f"| median | | {statistics.median(mine):.0f} | {statistics.median(theirs):.0f} | "
          f"{statistics.median(mine) / statistics.median(theirs):.2f}x |")
    print(f"ratio of the medians {statistics.median(mine) / statistics.median(theirs):.2f}x; median of the "
          f"per-round ratios {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    median_round = sorted(zip(ratios, range(1, len(ratios) + 1)))[(len(ratios) - 1) // 2][1]
    with open(os.path.join(out, "median_round.txt"), "w") as f:
        f.write(str(median_round))
print("Other processes' load slows either program; the rounds alternate so both see it. Compare ratios.")
PYTHON

if [ -s "$out/median_round.txt" ]; then
    median_round=$(cat "$out/median_round.txt")
    echo
    echo "round $median_round (the median ratio) in full:"
    python3 "$here/report_gpt.py" "$out/round${median_round}_minipipe.json" "$out/round${median_round}_torch.json" \
        || status=1
fi
exit $status
