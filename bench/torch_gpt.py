"""PyTorch twin of bench/bench_gpt.cpp, eager or torch.compile: the same GPT (minipipe's nn/models.cpp
architecture and initialisation), optimizer, batches, warm-up/timed steps, timing method and JSON
fields, so bench/report_gpt.py can set minipipe's tokens/s beside PyTorch's measured in the same run.

Model: token + position embedding; pre-LN blocks x = x + proj(attn(ln_1(x))), x = x + mlp(ln_2(x)) with
fused qkv Linear(C, 3C), GELU (tanh), MLP C -> 4C -> C; final LayerNorm; untied head Linear(C, vocab,
bias=False). Init as minipipe: every weight N(0, 0.02^2), biases zero, the two residual projections
N(0, (0.02/sqrt(2L))^2), LayerNorms 1/0 with eps 1e-5. Attention: --attention math (default) computes
q·kᵀ/√D, a causal mask and softmax explicitly, as minipipe does (the T×T scores are materialized);
--attention sdpa uses F.scaled_dot_product_attention(is_causal=True) (flash/efficient kernels on GPU).

Precision: fp32 (exact float32 matmuls), tf32 (float32 on TF32 tensor cores, GPU only), bf16 (mixed
precision as PyTorch users train: float32 master weights and AdamW state, torch.autocast to bfloat16
around forward and loss, backward outside it). AdamW is the fused one on CUDA (one kernel per step, in
every precision), PyTorch's default on the CPU. --compile wraps the model in torch.compile (static
shapes, compiled afresh per batch size in the warm-up steps); where compiling fails (no C++ compiler
for the CPU, no Triton...) it prints why, writes the reason in place of the rows and exits 0.

Usage: torch_gpt.py [--batch 8,16] [--steps 10] [--warmup 3] [--precision fp32|tf32|bf16]
                    [--device cuda|cpu] [--json FILE] [--tiny] [--attention math|sdpa] [--threads N]
                    [--compile [--compile-backend inductor]]
                    [--layers N --heads N --channels N --context N --vocab N]
"""
import contextlib
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The benchmark's AdamW and clipping: the same constants as bench/bench_gpt.cpp.
LEARNING_RATE, BETAS, EPS, WEIGHT_DECAY = 3e-4, (0.9, 0.95), 1e-8, 0.1
GRAD_CLIP = 1.0

# Datasheet peaks (NVIDIA H100/H200 Tensor Core GPU datasheets, SXM, dense: bf16 990, not the sparse
# 1979), FLOP/s, chosen by the device name; the same table as kPeakTable in tensor/peak_flops.cpp: keep
# the two in step.
PEAK_TABLE = [
    ("H100 SXM (datasheet)", "H100", {"fp32": 67e12, "tf32": 495e12, "bf16": 990e12}),
    ("H200 SXM (datasheet)", "H200", {"fp32": 67e12, "tf32": 495e12, "bf16": 990e12}),
]
PEAK_LABELS = {"fp32": "FP32", "tf32": "TF32 dense", "bf16": "BF16 dense"}
OTHER_FORM_FACTORS = ("PCIe", "NVL", "GH200")  # not in the table: MFU "n/a"
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch.OutOfMemoryError from 2.5


def find_peak(device_name):
    if any(form in device_name for form in OTHER_FORM_FACTORS):
        return None
    for label, name_contains, peaks in PEAK_TABLE:
        if name_contains in device_name:
            return label, peaks
    return None


class CausalSelfAttention(nn.Module):
    def __init__(self, channels, heads, proj_std, attention):
        super().__init__()
        self.heads = heads
        self.attention = attention
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.normal_(self.qkv.weight, 0.0, 0.02)
        nn.init.zeros_(self.qkv.bias)
        nn.init.normal_(self.proj.weight, 0.0, proj_std)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        batch, time_steps, channels = x.shape
        head_dim = channels // self.heads
        q, k, v = self.qkv(x).split(channels, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(batch, time_steps, self.heads, head_dim).transpose(1, 2) for t in (q, k, v))
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(head_dim))
            future = torch.ones(time_steps, time_steps, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
            y = F.softmax(scores, dim=-1) @ v
        y = y.transpose(1, 2).contiguous().view(batch, time_steps, channels)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, channels, proj_std):
        super().__init__()
        self.fc = nn.Linear(channels, 4 * channels)
        self.proj = nn.Linear(4 * channels, channels)
        nn.init.normal_(self.fc.weight, 0.0, 0.02)
        nn.init.zeros_(self.fc.bias)
        nn.init.normal_(self.proj.weight, 0.0, proj_std)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, channels, heads, layers, attention):
        super().__init__()
        proj_std = 0.02 / math.sqrt(2 * layers)  # residual projections, as minipipe's TransformerBlock
        self.ln_1 = nn.LayerNorm(channels, eps=1e-5)
        self.attn = CausalSelfAttention(channels, heads, proj_std, attention)
        self.ln_2 = nn.LayerNorm(channels, eps=1e-5)
        self.mlp = MLP(channels, proj_std)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab, context, layers, heads, channels, attention):
        super().__init__()
        self.wte = nn.Embedding(vocab, channels)
        self.wpe = nn.Embedding(context, channels)
        nn.init.normal_(self.wte.weight, 0.0, 0.02)
        nn.init.normal_(self.wpe.weight, 0.0, 0.02)
        self.blocks = nn.ModuleList(Block(channels, heads, layers, attention) for _ in range(layers))
        self.ln_f = nn.LayerNorm(channels, eps=1e-5)
        self.head = nn.Linear(channels, vocab, bias=False)  # untied, as minipipe's
        nn.init.normal_(self.head.weight, 0.0, 0.02)

    def forward(self, ids):
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", default=None, help="batch sizes, each run in turn (default 8,16; --tiny: 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per batch size (default 10; --tiny: 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before them (default 3; --tiny: 2)")
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32",
                        help="fp32, tf32 (GPU), or bf16 mixed precision: autocast, float32 masters (default fp32)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--json", default="", help="write the results as JSON (for bench/report_gpt.py)")
    parser.add_argument("--tiny", action="store_true", help="the shape bench_gpt --tiny uses (CI, CPU)")
    parser.add_argument("--attention", choices=["math", "sdpa"], default="math",
                        help="math: explicit masked softmax like minipipe (default); "
                             "sdpa: scaled_dot_product_attention")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: PyTorch's)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile(model): rows of the implementation 'torch.compile' instead of eager")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile's backend (default inductor; 'eager' only traces: a quick check)")
    for name in ("layers", "heads", "channels", "context", "vocab"):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"override the model's {name}")
    args = parser.parse_args(argv)
    # GPT-2 124M, or bench_gpt's --tiny shape; explicit sizes override either (as in bench_gpt).
    shape = dict(layers=12, heads=12, channels=768, context=1024, vocab=50257)
    defaults = dict(batch="8,16", steps=10, warmup=3)
    if args.tiny:
        shape = dict(layers=2, heads=2, channels=32, context=32, vocab=96)
        defaults = dict(batch="4", steps=3, warmup=2)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in shape:
        if getattr(args, name) is not None:
            shape[name] = getattr(args, name)
    args.shape = shape
    args.batches = [int(b) for b in args.batch.split(",")]
    if args.steps < 1 or args.warmup < 0 or min(args.batches) < 1:
        parser.error(f"--steps must be >= 1, --warmup >= 0 and batches >= 1 "
                     f"(got {args.steps}, {args.warmup}, {args.batch})")
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup >= 1: the first step compiles, and it must not be timed")
    return args


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_line(error):
    """The exception's type and the first non-empty line of its message."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0].strip() if lines else '(no message)'}"


class CompileFailed(Exception):
    """torch.compile could not compile the model here: the reason replaces the rows, not a crash."""


def run_batch(args, batch, device, flops_per_token, peak_flops):
    shape = args.shape
    total_steps = args.warmup + args.steps
    generator = torch.Generator().manual_seed(1337 * 1000003 + batch)
    data = [(torch.randint(0, shape["vocab"], (batch, shape["context"]), generator=generator).to(device),
             torch.randint(0, shape["vocab"], (batch, shape["context"]), generator=generator).to(device))
            for _ in range(total_steps)]
    print(f"  batch {batch}: building the model and the optimizer on {device}", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(1337)
    model = GPT(attention=args.attention, **shape).to(device)  # float32 masters in every precision
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY,
                                  fused=device.type == "cuda")
    forward = model
    if args.compile:
        torch._dynamo.reset()  # static shapes for this batch size: no recompile as a dynamic-shape graph
        try:
            forward = torch.compile(model, backend=args.compile_backend)
        except Exception as error:  # an unknown backend, or no compiler support in this build
            raise CompileFailed(first_line(error)) from error
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if args.precision == "bf16" \
        else contextlib.nullcontext
    tokens_per_step = batch * shape["context"]
    step_ms, losses = [], []
    for step in range(total_steps):
        ids, targets = data[step]
        timed = step >= args.warmup
        sync(device)
        begin = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        try:
            with autocast():  # bf16: the matmuls in bfloat16, cross-entropy in float32 (autocast's list)
                logits = forward(ids)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            loss.backward()
        except OUT_OF_MEMORY:
            raise
        except Exception as error:
            if args.compile and step == 0:  # compiling happens in the first call (and its backward)
                raise CompileFailed(first_line(error)) from error
            raise
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        sync(device)  # the clock is read once the device has finished the step
        ms = 1e3 * (time.perf_counter() - begin)
        loss_value = loss.item()
        if timed:
            step_ms.append(ms)
            losses.append(loss_value)
        suffix = "" if timed else " (warm-up)"
        print(f"  batch {batch} step {step + 1}/{total_steps}{suffix}: {ms:9.1f} ms  "
              f"{tokens_per_step / (ms / 1e3):9.0f} tokens/s  loss {loss_value:.4f}", flush=True)
    peak_bytes = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del model, forward, optimizer, logits, loss, data
    if device.type == "cuda":
        torch.cuda.empty_cache()
    ordered = sorted(step_ms)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
    tokens_per_s = tokens_per_step / (median / 1e3)
    return {
        "batch": batch, "ms_per_step": median, "ms_min": ordered[0], "ms_max": ordered[-1],
        "tokens_per_s": tokens_per_s,
        "mfu": flops_per_token * tokens_per_s / peak_flops if peak_flops else None,
        "peak_bytes": peak_bytes, "loss_first": losses[0], "loss_last": losses[-1],
    }


def json_safe(value):
    """JSON has no NaN or infinity: such a number is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(argv):
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_gpt: no GPU visible to PyTorch; use --device cpu to train on the CPU")
        return 0
    device = torch.device(args.device)
    precision = args.precision
    peak_flops, peak_label = None, "CPU: no peak known"
    if device.type == "cuda":
        device_label = torch.cuda.get_device_name(device)
        found = find_peak(device_label)
        if found:
            peak_flops = found[1][precision]
            peak_label = f"{found[0]}, {PEAK_LABELS[precision]}"
        else:
            peak_label = "unknown device: not in the peak table"
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
    else:
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        device_label = f"cpu ({torch.get_num_threads()} threads)"
        if precision == "tf32":
            print("torch_gpt: TF32 does not apply on the CPU: GEMMs run in exact fp32")
            precision = "fp32"
        # bf16 stays bf16 on the CPU: autocast runs the matmuls in bfloat16 there too.

    shape = args.shape
    if shape["channels"] % shape["heads"]:
        print(f"torch_gpt: channels {shape['channels']} must be divisible by heads {shape['heads']}", file=sys.stderr)
        return 2
    with torch.device("meta"):  # counts parameters without allocating them
        counted = GPT(attention=args.attention, **shape)
    parameters = sum(p.numel() for p in counted.parameters())
    matmul_parameters = parameters - counted.wte.weight.numel() - counted.wpe.weight.numel()
    flops_per_token = 6 * matmul_parameters + 6 * shape["layers"] * shape["channels"] * shape["context"]

    implementation = "torch.compile" if args.compile else "PyTorch eager"
    how = f"torch.compile (backend {args.compile_backend})" if args.compile else "eager"
    optimizer_text = "AdamW, fused" if device.type == "cuda" else "AdamW, PyTorch's default implementation"
    print(f"torch_gpt: PyTorch {torch.__version__} {how}, attention {args.attention}, "
          f"GPT training steps on random tokens")
    print(f"model: {shape}{' [--tiny]' if args.tiny else ''}, {parameters} parameters "
          f"(N = {matmul_parameters} outside the embedding tables)")
    peak_text = f"{peak_flops / 1e12:.0f} TFLOP/s" if peak_flops else "n/a"
    print(f"device: {device_label}, precision {precision}, peak {peak_text} ({peak_label})")
    print(f"flops per token = 6*N + 6*L*C*T = {flops_per_token:.4g} (attention over the causal lower triangle)")
    print(f"optimizer: {optimizer_text} (lr {LEARNING_RATE}, betas {BETAS[0]}/{BETAS[1]}, eps {EPS}, "
          f"weight decay {WEIGHT_DECAY}), "
          f"grad clip {GRAD_CLIP}; {args.warmup} warm-up + {args.steps} timed steps per batch; batches {args.batch}",
          flush=True)

    runs, failed, compile_failure = [], False, None
    for batch in args.batches:
        if compile_failure is not None:  # it would fail again the same way: say so without retrying
            runs.append({"batch": batch, "error": compile_failure})
            continue
        try:
            run = run_batch(args, batch, device, flops_per_token, peak_flops)
        except CompileFailed as error:  # PyTorch's tooling, not a result: reported, and the run goes on
            compile_failure = f"torch.compile unavailable here: {error}"
            run = {"batch": batch, "error": compile_failure}
            print(f"torch_gpt: batch {batch}: {compile_failure}; no torch.compile rows", file=sys.stderr)
        except OUT_OF_MEMORY as error:
            failed = True
            run = {"batch": batch, "error": f"out of memory: {str(error).splitlines()[0]}"}
            print(f"torch_gpt: batch {batch} failed: {run['error']}", file=sys.stderr)
            torch.cuda.empty_cache()
        except RuntimeError as error:
            failed = True
            run = {"batch": batch, "error": str(error).splitlines()[0]}
            print(f"torch_gpt: batch {batch} failed: {run['error']}", file=sys.stderr)
        if "error" not in run:
            mfu = f"{100 * run['mfu']:.1f}%" if run["mfu"] is not None else "n/a"
            memory = f"{run['peak_bytes'] / 2**30:.2f} GiB" if run["peak_bytes"] is not None else "n/a"
            print(f"batch {batch}: {run['ms_per_step']:.1f} ms/step (median of {args.steps}; min {run['ms_min']:.1f}, "
                  f"max {run['ms_max']:.1f}), {run['tokens_per_s']:.0f} tokens/s, MFU {mfu}, peak memory {memory}, "
                  f"loss {run['loss_first']:.4f} -> {run['loss_last']:.4f}", flush=True)
            if not (math.isfinite(run["loss_first"]) and math.isfinite(run["loss_last"])):
                print(f"torch_gpt: batch {batch}: the loss is not finite", file=sys.stderr)
                failed = True
        runs.append({key: json_safe(value) for key, value in run.items()})

    if args.json:
        result = {
            "system": f"pytorch {torch.__version__} {'torch.compile' if args.compile else 'eager'}",
            "implementation": implementation,
            "compile_backend": args.compile_backend if args.compile else None,
            "attention": args.attention,
            "optimizer": optimizer_text,
            "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda,
            "cpu_count": os.cpu_count(),
            "device": device_label,
            "precision": precision,
            "model": shape,
            "parameters": parameters,
            "matmul_parameters": matmul_parameters,
            "flops_per_token": flops_per_token,
            "flops_formula": "6*N + 6*L*C*T, N = parameters outside the embedding tables, causal attention",
            "peak_flops": peak_flops,
            "peak_source": peak_label,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),  # moves CPU timings on a busy machine
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
            "runs": runs,
        }
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
            out.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
