"""Joins bench_gpt's JSON with torch_gpt.py's (same run, same device) into one Markdown table: system,
precision, batch, ms/step, tokens/s, MFU, peak memory, and minipipe's tokens/s over each PyTorch row's.
Warns when the files disagree on the model (parameters, flops per token) or the device.
Usage: report_gpt.py minipipe.json [torch.json ...]"""
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def system_name(result):
    attention = result.get("attention")
    return f"{result['system']} (attention {attention})" if attention else result["system"]


def mfu_text(run):
    return f"{100 * run['mfu']:.1f}%" if run.get("mfu") is not None else "n/a"


def memory_text(run):
    if run.get("peak_bytes") is None:
        return "n/a"
    size, unit = float(run["peak_bytes"]), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.2f} {unit}"


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    ours = load(paths[0])
    others = [load(path) for path in paths[1:]]
    model = ours["model"]
    print(f"device: {ours['device']}; model: {model['layers']} layers, {model['heads']} heads, {model['channels']} "
          f"channels, context {model['context']}, vocab {model['vocab']}; {ours['parameters']} parameters")
    print(f"flops per token: {ours['flops_per_token']:.4g} = {ours['flops_formula']}; peak: {ours['peak_source']}")
    print(f"{ours['warmup_steps']} warm-up + {ours['timed_steps']} timed steps per batch; ms/step is the median; "
          f"OMP_WAIT_POLICY {ours.get('omp_wait_policy', 'unset')}")
    problems = 0
    for other in others:
        for key in ("parameters", "flops_per_token", "model", "precision", "timed_steps", "warmup_steps"):
            if other.get(key) != ours.get(key):
                print(f"warning: {system_name(other)} has {key} {other.get(key)}, minipipe {ours.get(key)}")
                problems += 1
        if other["device"].startswith("cpu") != ours["device"].startswith("cpu"):
            print(f"warning: {system_name(other)} ran on {other['device']}, minipipe on {ours['device']}")
            problems += 1
    print()

    ours_by_batch = {run["batch"]: run for run in ours["runs"]}
    print("| system | precision | batch | ms/step | tokens/s | MFU | peak memory | minipipe / this (tokens/s) |")
    print("|---|---|---|---|---|---|---|---|")
    for result in [ours] + others:
        for run in result["runs"]:
            row_start = f"| {system_name(result)} | {result['precision']} | {run['batch']} |"
            if "error" in run:
                print(f"{row_start} failed: {run['error']} | | | | | |")
                continue
            ratio = ""
            mine = ours_by_batch.get(run["batch"])
            if result is not ours and mine is not None and "error" not in mine:
                ratio = f"{mine['tokens_per_s'] / run['tokens_per_s']:.2f}x"
            print(f"{row_start} {run['ms_per_step']:.1f} | {run['tokens_per_s']:.0f} | {mfu_text(run)} | "
                  f"{memory_text(run)} | {ratio} |")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
