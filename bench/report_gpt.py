"""Joins bench_gpt's JSON files with torch_gpt.py's (same run, same device) into Markdown tables: every
row (implementation, precision, batch, ms/step, tokens/s, MFU, peak memory, minipipe's tokens/s over the
row's), then per precision and batch minipipe against the fastest PyTorch eager row and torch.compile.
Warns when the files disagree on the model (parameters, flops per token, steps) or the device.
Usage: report_gpt.py RESULT.json [RESULT.json ...]   (any order; minipipe's and PyTorch's, any precisions)"""
import json
import platform
import sys

PRECISION_ORDER = ("bf16", "tf32", "fp32")  # the first bar first
IMPLEMENTATION_ORDER = ("minipipe", "PyTorch eager", "torch.compile")


def load(path):
    with open(path) as f:
        return json.load(f)


def implementation(result):
    """minipipe, PyTorch eager or torch.compile (files from before the field: read from the system)."""
    if "implementation" in result:
        return result["implementation"]
    if result["system"] == "minipipe":
        return "minipipe"
    return "torch.compile" if "torch.compile" in result["system"] else "PyTorch eager"


def row_name(result):
    name = implementation(result)
    backend = result.get("compile_backend")
    if backend and backend != "inductor":
        name += f" [backend {backend}]"
    attention = result.get("attention")
    return f"{name} (attention {attention})" if attention else name


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


def finished(run):
    return run is not None and "error" not in run


def ratio_text(mine, theirs):
    return f"{mine['tokens_per_s'] / theirs['tokens_per_s']:.2f}x" if finished(mine) and finished(theirs) else ""


def machine_line(results, reference):
    """The device, the PyTorch build and the host, as the files and this machine say."""
    parts = [reference["device"]]
    torch_result = next((r for r in results if r.get("torch_version")), None)
    if torch_result is not None:
        cuda = torch_result.get("cuda_version")
        parts.append(f"PyTorch {torch_result['torch_version']}" + (f" (CUDA {cuda})" if cuda else ""))
        if torch_result.get("cpu_count"):
            parts.append(f"{torch_result['cpu_count']} CPU cores")
    parts.append(f"{platform.system()} {platform.release()}")
    return "machine: " + "; ".join(parts)


def check_agreement(results, reference):
    """Prints a warning per disagreement with the reference file; returns how many."""
    problems = 0
    for result in results:
        if result is reference:
            continue
        name = f"{row_name(result)} {result['precision']}"
        for key in ("parameters", "flops_per_token", "model", "timed_steps", "warmup_steps"):
            if result.get(key) != reference.get(key):
                print(f"warning: {name} has {key} {result.get(key)}, minipipe {reference.get(key)}")
                problems += 1
        on_cpu = result["device"].startswith("cpu"), reference["device"].startswith("cpu")
        # CPU labels carry thread counts, which each program chooses; GPU names must be the same.
        if on_cpu[0] != on_cpu[1] or (not on_cpu[0] and result["device"] != reference["device"]):
            print(f"warning: {name} ran on {result['device']}, minipipe on {reference['device']}")
            problems += 1
    return problems


def sort_key(order, value):
    return (order.index(value) if value in order else len(order), value)


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    results = [load(path) for path in paths]
    ours = [r for r in results if implementation(r) == "minipipe"]
    reference = ours[0] if ours else results[0]
    model = reference["model"]
    print(machine_line(results, reference))
    print(f"model: {model['layers']} layers, {model['heads']} heads, {model['channels']} channels, context "
          f"{model['context']}, vocab {model['vocab']}; {reference['parameters']} parameters")
    print(f"flops per token: {reference['flops_per_token']:.4g} = {reference['flops_formula']}")
    peaks = sorted({(r["precision"], r["peak_source"]) for r in results},
                   key=lambda peak: sort_key(PRECISION_ORDER, peak[0]))
    print("peak: " + "; ".join(f"{precision}: {source}" for precision, source in peaks))
    print(f"{reference['warmup_steps']} warm-up + {reference['timed_steps']} timed steps per batch; ms/step is the "
          f"median; OMP_WAIT_POLICY {reference.get('omp_wait_policy', 'unset')}")
    optimizers = sorted({r["optimizer"] for r in results if r.get("optimizer")})
    if optimizers:
        print(f"PyTorch optimizer: {', '.join(optimizers)}")
    if not ours:
        print("warning: no minipipe results among the files: no ratios")
    problems = check_agreement(results, reference)
    print()

    precisions = sorted({r["precision"] for r in results}, key=lambda p: sort_key(PRECISION_ORDER, p))

    def batches(precision):  # the batch sizes any file of this precision has
        return sorted({run["batch"] for r in results if r["precision"] == precision for run in r["runs"]})
    results.sort(key=lambda r: (sort_key(IMPLEMENTATION_ORDER, implementation(r)), r.get("attention") or ""))

    def run_of(result, batch):
        return next((run for run in result["runs"] if run["batch"] == batch), None)

    def minipipe_run(precision, batch):
        mine = next((r for r in ours if r["precision"] == precision), None)
        return run_of(mine, batch) if mine is not None else None

    print("| implementation | precision | batch | ms/step | tokens/s | MFU | peak memory "
          "| minipipe / this (tokens/s) |")
    print("|---|---|---|---|---|---|---|---|")
    for precision in precisions:
        for batch in batches(precision):
            for result in (r for r in results if r["precision"] == precision):
                run = run_of(result, batch)
                if run is None:
                    continue
                row_start = f"| {row_name(result)} | {precision} | {batch} |"
                if "error" in run:
                    print(f"{row_start} not measured: {run['error']} | | | | | |")
                    continue
                mine = minipipe_run(precision, batch)
                ratio = ratio_text(mine, run) if implementation(result) != "minipipe" else ""
                print(f"{row_start} {run['ms_per_step']:.1f} | {run['tokens_per_s']:.0f} | {mfu_text(run)} | "
                      f"{memory_text(run)} | {ratio} |")

    # minipipe against PyTorch: the fastest eager row (its attention named) and torch.compile.
    print()
    print("| precision | batch | minipipe tokens/s | PyTorch eager tokens/s | minipipe / eager "
          "| torch.compile tokens/s | minipipe / torch.compile |")
    print("|---|---|---|---|---|---|---|")
    for precision in precisions:
        for batch in batches(precision):
            mine = minipipe_run(precision, batch)
            cells = [f"{mine['tokens_per_s']:.0f}" if finished(mine) else "not measured"]
            for kind in ("PyTorch eager", "torch.compile"):
                rows = [(run_of(r, batch), r) for r in results
                        if r["precision"] == precision and implementation(r) == kind]
                rows = [(run, r) for run, r in rows if finished(run)]
                if not rows:
                    cells += ["not measured", ""]
                    continue
                best, result = max(rows, key=lambda pair: pair[0]["tokens_per_s"])
                attention = f" ({result['attention']})" if result.get("attention") else ""
                cells += [f"{best['tokens_per_s']:.0f}{attention}", ratio_text(mine, best)]
            print(f"| {precision} | {batch} | " + " | ".join(cells) + " |")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
