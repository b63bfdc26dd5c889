"""Joins bench_kernels' JSON with torch_ops' JSON (same run, same GPU) into a Markdown table:
time, GB/s (or TFLOP/s), the fraction of the ceiling — the device-to-device copy bandwidth
measured in this run for byte-counted rows, the datasheet peak of the row's precision (fp32,
TF32, bf16 dense) for FLOP-counted rows — PyTorch eager's time, and the speed ratio (> 1 means
minipipe is faster). PyTorch's alternatives for a row (name:variant, e.g. AdamW foreach beside
fused) follow it on their own lines. Rows that did not run show their error.
Usage: report.py ours.json [torch.json]"""
import json
import sys

# Dense datasheet peaks (FLOP/s), SXM parts, by a substring of the device name: the same figures as
# tensor/peak_flops.cpp's kPeakTable and bench/torch_gpt.py (keep them in step). PCIe/NVL parts are
# not listed: their FLOP rows show no percentage.
PEAK_FLOPS = {"H100": {"fp32": 67e12, "tf32": 495e12, "bf16": 990e12},
              "H200": {"fp32": 67e12, "tf32": 495e12, "bf16": 990e12}}


def peak_for(device):
    if not device or any(form in device for form in ("PCIe", "NVL", "GH200")):
        return None
    for key, peaks in PEAK_FLOPS.items():
        if key in device:
            return peaks
    return None


def short(error, width=90):
    return error if len(error) <= width else error[:width - 3] + "..."


def main():
    ours = json.load(open(sys.argv[1]))
    torch = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else {}
    meta = ours.pop("_meta", {})
    peaks = peak_for(meta.get("device", ""))
    copy = ours.get("copy_1GiB", {})
    copy_gbps = copy["bytes"] / copy["ms"] / 1e6 if copy.get("ms") else None
    if meta.get("device"):
        print(f"device: {meta['device']}; ceilings: copy bandwidth measured in this run"
              + (f" ({copy_gbps:.0f} GB/s)" if copy_gbps else "")
              + (", datasheet dense peaks for FLOP rows" if peaks else ", no datasheet peak known for FLOP rows"))
    print("| op | minipipe ms | GB/s or TFLOP/s | % of ceiling | PyTorch ms | speed vs PyTorch |")
    print("|---|---|---|---|---|---|")

    def theirs(name, ms):
        row = torch.get(name)
        if row is None:
            return "n/a", "n/a"
        if row.get("error"):
            return f"not run: {short(row['error'], 60)}", "n/a"
        return f"{row['ms']:.3f}", (f"{row['ms'] / ms:.2f}x" if ms else "n/a")

    for name, r in ours.items():
        if r.get("error") or r.get("ms") is None:
            their_ms, _ = theirs(name, None)
            print(f"| {name} | not run: {short(r.get('error', 'no time'))} | | | {their_ms} | n/a |")
        else:
            if r["flops"]:
                tflops = r["flops"] / r["ms"] / 1e9
                rate = f"{tflops:.1f} TFLOP/s"
                precision = r.get("precision", "fp32")
                frac = f"{100 * tflops * 1e12 / peaks[precision]:.0f}% of {precision} peak" \
                    if peaks and precision in peaks else ""
            else:
                gbps = r["bytes"] / r["ms"] / 1e6
                rate = f"{gbps:.0f} GB/s"
                frac = f"{100 * gbps / copy_gbps:.0f}% of copy" if copy_gbps else ""
            their_ms, ratio = theirs(name, r["ms"])
            print(f"| {name} | {r['ms']:.3f} | {rate} | {frac} | {their_ms} | {ratio} |")
        for variant in sorted(k for k in torch if k.startswith(name + ":")):
            their_ms, ratio = theirs(variant, r.get("ms"))
            print(f"| {name} vs PyTorch {variant.split(':', 1)[1]} | | | | {their_ms} | {ratio} |")


if __name__ == "__main__":
    main()
