"""PyTorch eager timings of the ops that bench_kernels times, same names, shapes and method
(CUDA events, median of repetitions after warm-up), so bench/report.py can print ratios
measured in the same run on the same GPU. A name with a ':' suffix (adamw_gpt2_148_tensors:foreach)
is a second PyTorch way of doing the same row's work, set beside it in the report.

Usage: torch_ops.py [OUT.json] [--only NAME_SUBSTRING] [--dry]
  --dry   every row once on the CPU at a tiny shape: checks that the script runs (the CPU smoke
          test, tests/run_bench_smoke.sh); its times mean nothing.
A row that raises is written as {"error": ...} and the others still run."""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def time_ms(fn, reps=20, warmup=5, cuda=True):
    if not cuda:  # --dry: once, wall clock
        start = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - start)
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


def gpt2_parameter_shapes(vocab, context, channels, layers):
    """GPT-2's parameters with the head tied to wte (148 tensors, 124,439,808 values for 124M), in
    bench_kernels' order: wte, wpe, per block ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
    mlp.c_proj (weight, bias each), then ln_f."""
    c = channels
    block = [(c,), (c,), (3 * c, c), (3 * c,), (c, c), (c,), (c,), (c,), (4 * c, c), (4 * c,), (c, 4 * c), (c,)]
    return [(vocab, c), (context, c)] + block * layers + [(c,), (c,)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="torch_ops.json")
    parser.add_argument("--only", default="", help="time only the rows whose name contains this")
    parser.add_argument("--dry", action="store_true", help="each row once on the CPU at a tiny shape")
    args = parser.parse_args()
    cuda = not args.dry
    dev = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    if cuda:
        B, T, C, H, V, PADDED, LAYERS = 16, 1024, 768, 12, 50257, 50304, 12
        COPY, P, AB = 1 << 28, 124_000_000, 8
    else:
        B, T, C, H, V, PADDED, LAYERS = 2, 16, 32, 4, 101, 128, 2
        COPY, P, AB = 1 << 16, 4096, 1
    N = B * T
    bf16 = torch.bfloat16
    results = {}

    def selected(*names):  # copy_1GiB always runs, as in bench_kernels (the bandwidth ceiling)
        return any(args.only in name or name == "copy_1GiB" for name in names)

    def run(name, fn, reps=20, setup=None):
        """Times fn as row `name`; setup (once, untimed) may check inputs or results first."""
        if not selected(name):
            return
        try:
            if setup is not None:
                setup()
            results[name] = {"ms": time_ms(fn, reps, cuda=cuda)}
            print(f"torch {name:32s} {results[name]['ms']:9.3f} ms", flush=True)
        except Exception as e:  # noqa: BLE001 - any failure is this row's, reported, never the run's
            results[name] = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
            print(f"torch {name:32s} not run: {results[name]['error']}", flush=True)

    src = torch.randn(COPY, device=dev)
    dst = torch.empty_like(src)
    run("copy_1GiB", lambda: dst.copy_(src))
    del src, dst

    if selected("gemm_fc_fp32", "gemm_fc_tf32"):
        x, w = torch.randn(N, C, device=dev), torch.randn(4 * C, C, device=dev)
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            run("gemm_fc_tf32" if tf32 else "gemm_fc_fp32", lambda: torch.matmul(x, w.t()))
        torch.backends.cuda.matmul.allow_tf32 = False
        del x, w

    # bfloat16 at the MLP's c_fc shape: the product, F.linear (cuBLASLt's bias epilogue in addmm) and
    # F.linear + tanh GELU (two kernels); the weight gradient accumulated into a float32 gradient —
    # addmm with out_dtype float32 in place (the same one GEMM as ours), and beside it the path
    # autocast's autograd takes (a bf16 mm, a cast to float32, an add into .grad); the bias
    # gradient as PyTorch's linear backward computes it, dy.sum(0) (without the add into .grad).
    if selected("gemm_fc_bf16", "linear_bias_fwd_bf16", "linear_bias_gelu_fwd_bf16", "gemm_wgrad_accum_bf16",
                "bias_grad_bf16"):
        x = torch.randn(N, C, device=dev).to(bf16)
        w, b = (0.02 * torch.randn(4 * C, C, device=dev)).to(bf16), (0.02 * torch.randn(4 * C, device=dev)).to(bf16)
        run("gemm_fc_bf16", lambda: torch.matmul(x, w.t()))
        run("linear_bias_fwd_bf16", lambda: F.linear(x, w, b))
        run("linear_bias_gelu_fwd_bf16", lambda: F.gelu(F.linear(x, w, b), approximate="tanh"))
        dy = torch.randn(N, 4 * C, device=dev).to(bf16)
        dweight = torch.zeros(4 * C, C, device=dev)

        def wgrad_addmm():
            torch.addmm(dweight, dy.t(), x, out_dtype=torch.float32, out=dweight)

        def check_wgrad_addmm():  # the in-place mixed-dtype addmm adds dyᵀ·x to what was there
            dweight.zero_()
            wgrad_addmm()
            reference = dy.t().float() @ x.float()
            if not torch.allclose(dweight, reference, rtol=1e-2, atol=1e-2 * reference.abs().max().item()):
                raise RuntimeError("addmm(out_dtype=float32, out=self) did not accumulate dyᵀ·x in place")

        run("gemm_wgrad_accum_bf16", wgrad_addmm, setup=check_wgrad_addmm)
        run("gemm_wgrad_accum_bf16:mm_cast_add", lambda: dweight.add_(torch.mm(dy.t(), x).float()))
        run("bias_grad_bf16", lambda: dy.sum(0))
        del x, w, b, dy, dweight

    if selected("layernorm_fwd", "layernorm_bwd", "layernorm_fwd_bf16", "layernorm_bwd_bf16"):
        for dtype, suffix in ((torch.float32, ""), (bf16, "_bf16")):
            if not selected("layernorm_fwd" + suffix, "layernorm_bwd" + suffix):
                continue
            xin = torch.randn(N, C, device=dev).to(dtype).requires_grad_(True)
            gamma = torch.randn(C, device=dev).to(dtype).requires_grad_(True)
            beta = torch.randn(C, device=dev).to(dtype).requires_grad_(True)
            run("layernorm_fwd" + suffix, lambda: F.layer_norm(xin, (C,), gamma, beta))
            out = F.layer_norm(xin, (C,), gamma, beta)
            dy = torch.randn_like(out)
            run("layernorm_bwd" + suffix, lambda: torch.autograd.grad(out, [xin, gamma, beta], dy, retain_graph=True))
            del xin, gamma, beta, out, dy

    if selected("softmax_fwd_attn", "causal_softmax_fwd_attn"):
        scores = torch.randn(B * H * T, T, device=dev)
        run("softmax_fwd_attn", lambda: torch.softmax(scores, -1))
        mask = torch.ones(T, T, device=dev, dtype=torch.bool).tril()
        causal = scores.view(B * H, T, T)
        run("causal_softmax_fwd_attn", lambda: torch.softmax((causal * 0.125).masked_fill(~mask, float("-inf")), -1))
        del scores, causal

    if selected("gelu_fwd", "gelu_bwd", "add", "bias_add", "sum_rows"):
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

    targets = torch.randint(0, V, (N,), device=dev)

    def cross_entropy_row(name, logits):
        def fwd_bwd():
            loss = F.cross_entropy(logits, targets)
            torch.autograd.grad(loss, logits)
        run(name, fwd_bwd, reps=10)

    if selected("crossentropy_fwd_bwd"):
        cross_entropy_row("crossentropy_fwd_bwd", torch.randn(N, V, device=dev, requires_grad=True))
    # bfloat16 logits: forward + backward, as the separate bf16 kernels and the fused one-pass kernel
    # do (one PyTorch measurement, written under both names); with the vocabulary padded to 50304
    # PyTorch's loss runs over all 50304 columns (nanoGPT's padded head), ours over the 50257 real ones.
    if selected("crossentropy_fwd_bwd_bf16", "crossentropy_fused_bf16"):
        logits = torch.randn(N, V, device=dev).to(bf16).requires_grad_(True)
        cross_entropy_row("crossentropy_fwd_bwd_bf16", logits)
        if "crossentropy_fwd_bwd_bf16" in results and selected("crossentropy_fused_bf16"):
            results["crossentropy_fused_bf16"] = dict(results["crossentropy_fwd_bwd_bf16"])
            print(f"torch {'crossentropy_fused_bf16':32s} (the same measurement as crossentropy_fwd_bwd_bf16)")
        del logits
    if selected("crossentropy_fused_bf16_pad50304"):
        cross_entropy_row("crossentropy_fused_bf16_pad50304",
                          torch.randn(N, PADDED, device=dev).to(bf16).requires_grad_(True))

    if selected("adamw_step_124M"):
        p = torch.randn(P, device=dev, requires_grad=True)
        p.grad = torch.randn(P, device=dev)
        opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.1, fused=True)
        run("adamw_step_124M", opt.step)
        del p, opt

    # GPT-2 124M's 148 parameters (float32, as masters are in mixed precision too): AdamW fused
    # (one multi-tensor kernel, as ours) and foreach; the total gradient norm alone (foreach), and
    # clip_grad_norm_ (foreach: the norm, then every gradient multiplied by min(1, max_norm / norm)).
    if selected("adamw_gpt2_148_tensors", "grad_norm_gpt2_148_tensors", "clip_grad_norm_gpt2_148_tensors"):
        shapes = gpt2_parameter_shapes(V, T, C, LAYERS)
        params = [(0.02 * torch.randn(shape, device=dev)).requires_grad_(True) for shape in shapes]
        for p in params:
            p.grad = torch.randn_like(p)
        if cuda and (len(params), sum(p.numel() for p in params)) != (148, 124_439_808):
            raise RuntimeError(f"gpt2_parameter_shapes: {len(params)} tensors; GPT-2 124M has 148, 124439808 values")
        for variant, flags in (("", {"fused": True}), (":foreach", {"foreach": True})):
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, **flags)
            run("adamw_gpt2_148_tensors" + variant, opt.step)
            del opt
        grads = [p.grad for p in params]
        if hasattr(torch.nn.utils, "get_total_norm"):
            run("grad_norm_gpt2_148_tensors", lambda: torch.nn.utils.get_total_norm(grads, foreach=True))
        else:  # before PyTorch 2.6: what clip_grad_norm_ computes first
            run("grad_norm_gpt2_148_tensors",
                lambda: torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
        run("clip_grad_norm_gpt2_148_tensors", lambda: torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True))
        del params, grads

    ids = torch.randint(0, V, (B, T), device=dev)  # random, as in bench_kernels: never all one row
    if selected("embedding_fwd", "embedding_bwd"):
        wte = torch.randn(V, C, device=dev, requires_grad=True)
        run("embedding_fwd", lambda: F.embedding(ids, wte))
        emb = F.embedding(ids, wte)
        demb = torch.randn_like(emb)
        run("embedding_bwd", lambda: torch.autograd.grad(emb, wte, demb, retain_graph=True))
        del wte, emb, demb
    # bfloat16 table: the lookup, the backward into a new bf16 gradient, and the backward added to an
    # existing .grad (autograd accumulates in place; PyTorch's .grad is bf16 here, ours float32).
    if selected("embedding_fwd_bf16", "embedding_bwd_bf16", "embedding_bwd_accum_bf16"):
        wte = (0.02 * torch.randn(V, C, device=dev)).to(bf16).requires_grad_(True)
        run("embedding_fwd_bf16", lambda: F.embedding(ids, wte))
        emb = F.embedding(ids, wte)
        demb = torch.randn_like(emb)
        run("embedding_bwd_bf16", lambda: torch.autograd.grad(emb, wte, demb, retain_graph=True))
        wte.grad = torch.zeros_like(wte)
        run("embedding_bwd_accum_bf16", lambda: emb.backward(demb, retain_graph=True))
        del wte, emb, demb

    if selected("split_qkv_heads"):
        qkv = torch.randn(B, T, 3 * C, device=dev)
        run("split_qkv_heads",
            lambda: [z.reshape(B, T, H, C // H).transpose(1, 2).contiguous() for z in qkv.split(C, 2)])
        del qkv

    # Causal attention in bfloat16 at GPT-2's B 8 (as bench_kernels' attention_fused rows): q, k, v
    # as strided views of one qkv, as the model has them; PyTorch picks its fastest SDPA backend.
    if selected("attention_fused_fwd_bf16", "attention_fused_bwd_bf16"):
        D = C // H
        qkv = (0.5 * torch.randn(AB, T, 3, H, D, device=dev)).to(bf16).requires_grad_(True)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        run("attention_fused_fwd_bf16", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        datt = torch.randn_like(att)
        run("attention_fused_bwd_bf16", lambda: torch.autograd.grad(att, qkv, datt, retain_graph=True))
        del qkv, att, datt

    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
