"""Joins bench_kernels' JSON with torch_ops' JSON (same run, same GPU) into a Markdown table:
time, GB/s (or TFLOP/s), fraction of the copy bandwidth measured in this run, PyTorch eager's
time, and the speed ratio (> 1 means minipipe is faster). Usage: report.py ours.json [torch.json]"""
import json
import sys


def main():
    ours = json.load(open(sys.argv[1]))
    torch = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else {}
    copy_gbps = ours["copy_1GiB"]["bytes"] / ours["copy_1GiB"]["ms"] / 1e6 if "copy_1GiB" in ours else None
    print("| op | minipipe ms | GB/s or TFLOP/s | % of copy BW | PyTorch ms | speed vs PyTorch |")
    print("|---|---|---|---|---|---|")
    for name, r in ours.items():
        if r["flops"]:
            rate = f"{r['flops'] / r['ms'] / 1e9:.1f} TFLOP/s"
            frac = ""
        else:
            gbps = r["bytes"] / r["ms"] / 1e6
            rate = f"{gbps:.0f} GB/s"
            frac = f"{100 * gbps / copy_gbps:.0f}%" if copy_gbps else ""
        if name in torch:
            theirs = f"{torch[name]['ms']:.3f}"
            ratio = f"{torch[name]['ms'] / r['ms']:.2f}x"
        else:
            theirs, ratio = "n/a", "n/a"
        print(f"| {name} | {r['ms']:.3f} | {rate} | {frac} | {theirs} | {ratio} |")


if __name__ == "__main__":
    main()
