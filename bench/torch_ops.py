"""PyTorch eager timings of the ops that bench_kernels times, same names, shapes and method
(CUDA events, median of repetitions after warm-up), so bench/report.py can print ratios
measured in the same run on the same GPU. Writes JSON to the path given as argv[1]."""
import json
import sys

import torch
import torch.nn.functional as F


def time_ms(fn, reps=20, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def main(out_path):
    dev = "cuda"
    torch.manual_seed(0)
    B, T, C, H, V = 16, 1024, 768, 12, 50257
    N = B * T
    results = {}

    def run(name, fn, reps=20):
        results[name] = {"ms": time_ms(fn, reps)}
        print(f"torch {name:32s} {results[name]['ms']:9.3f} ms", flush=True)

    src = torch.randn(1 << 28, device=dev)
    dst = torch.empty_like(src)
    run("copy_1GiB", lambda: dst.copy_(src))
    del src, dst

    x, w = torch.randn(N, C, device=dev), torch.randn(4 * C, C, device=dev)
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        run("gemm_fc_tf32" if tf32 else "gemm_fc_fp32", lambda: torch.matmul(x, w.t()))
    torch.backends.cuda.matmul.allow_tf32 = False

    xin = torch.randn(N, C, device=dev, requires_grad=True)
    gamma = torch.randn(C, device=dev, requires_grad=True)
    beta = torch.randn(C, device=dev, requires_grad=True)
    run("layernorm_fwd", lambda: F.layer_norm(xin, (C,), gamma, beta))
    out = F.layer_norm(xin, (C,), gamma, beta)
    dy = torch.randn_like(out)
    run("layernorm_bwd", lambda: torch.autograd.grad(out, [xin, gamma, beta], dy, retain_graph=True))
    del xin, out, dy

    scores = torch.randn(B * H * T, T, device=dev)
    run("softmax_fwd_attn", lambda: torch.softmax(scores, -1))
    mask = torch.ones(T, T, device=dev, dtype=torch.bool).tril()
    causal = scores.view(B * H, T, T)
    run("causal_softmax_fwd_attn", lambda: torch.softmax((causal * 0.125).masked_fill(~mask, float("-inf")), -1))
    del scores, causal

    h, g = torch.randn(N, 4 * C, device=dev), torch.randn(N, 4 * C, device=dev)
    run("gelu_fwd", lambda: F.gelu(h, approximate="tanh"))
    hr = h.clone().requires_grad_(True)
    y = F.gelu(hr, approximate="tanh")
    run("gelu_bwd", lambda: torch.autograd.grad(y, hr, g, retain_graph=True))
    del hr, y
    run("add", lambda: h + g)
    bias = torch.randn(4 * C, device=dev)
    run("bias_add", lambda: h + bias)
    run("sum_rows", lambda: h.sum(0))
    del h, g

    logits = torch.randn(N, V, device=dev, requires_grad=True)
    targets = torch.randint(0, V, (N,), device=dev)

    def cross_entropy():
        loss = F.cross_entropy(logits, targets)
        torch.autograd.grad(loss, logits)

    run("crossentropy_fwd_bwd", cross_entropy, reps=10)
    del logits

    P = 124_000_000
    p = torch.randn(P, device=dev, requires_grad=True)
    p.grad = torch.randn(P, device=dev)
    opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.1, fused=True)
    run("adamw_step_124M", opt.step)
    del p, opt

    wte = torch.randn(V, C, device=dev, requires_grad=True)
    ids = torch.randint(0, V, (B, T), device=dev)  # random, as in bench_kernels: never all one row
    run("embedding_fwd", lambda: F.embedding(ids, wte))
    emb = F.embedding(ids, wte)
    demb = torch.randn_like(emb)
    run("embedding_bwd", lambda: torch.autograd.grad(emb, wte, demb, retain_graph=True))
    del emb, demb
    qkv = torch.randn(B, T, 3 * C, device=dev)
    run("split_qkv_heads",
        lambda: [z.reshape(B, T, H, C // H).transpose(1, 2).contiguous() for z in qkv.split(C, 2)])

    del qkv
    # Causal attention in bfloat16 at GPT-2's B 8 (as bench_kernels' attention_fused rows): q, k, v
    # as strided views of one qkv, as the model has them; PyTorch picks its fastest SDPA backend.
    AB, D = 8, C // H
    qkv = (0.5 * torch.randn(AB, T, 3, H, D, device=dev)).to(torch.bfloat16).requires_grad_(True)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    run("attention_fused_fwd_bf16", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    datt = torch.randn_like(att)
    run("attention_fused_bwd_bf16", lambda: torch.autograd.grad(att, qkv, datt, retain_graph=True))
    del qkv, att, datt

    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "torch_ops.json")
