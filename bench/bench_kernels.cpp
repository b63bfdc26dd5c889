// Kernel benchmarks at GPT-2-small shapes (B·T = 16384 rows, C = 768, 4C = 3072, V = 50257,
// 12 heads, T = 1024) on GPU 0: median time over repetitions, achieved GB/s against each op's
// byte floor, the fraction of the device-to-device copy bandwidth measured in this same run,
// and TFLOP/s for GEMMs. Writes one JSON object per case to --json FILE for bench/report.py,
// which sets them beside PyTorch eager measured in the same run (bench/torch_ops.py). Inputs are
// random (never zeros) and validated before the timed region: the timed work never waits on the host.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "tensor/allocator.h"
#include "tensor/device_checks.h"
#include "tensor/device_context.h"
#include "tensor/ops.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

using namespace mp;

namespace {

struct Result {
    std::string name;
    double ms;
    double bytes;  // floor: bytes the op must move (0 for GEMMs)
    double flops;  // 2mnk for GEMMs, else 0
};

#if MP_CUDA
// Median over `reps` timed runs of fn (after `warmup` untimed runs), each timed by CUDA events
// on the compute stream so only GPU time counts.
double time_ms(const std::function<void()>& fn, int reps = 20, int warmup = 5) {
    cudaStream_t stream = compute_stream(0);
    for (int i = 0; i < warmup; ++i) fn();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    cudaEvent_t start, stop;
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<float> times;
    for (int i = 0; i < reps; ++i) {
        CUDA_CHECK(cudaEventRecord(start, stream));
        fn();
        CUDA_CHECK(cudaEventRecord(stop, stream));
        CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        times.push_back(ms);
    }
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}
#endif

[[maybe_unused]] void print_row(const Result& r, double copy_gbps) {  // unused in a CPU-only build
    if (r.flops > 0) {
        std::printf("%-34s %9.3f ms  %8.1f TFLOP/s\n", r.name.c_str(), r.ms, r.flops / r.ms / 1e9);
    } else {
        double gbps = r.bytes / r.ms / 1e6;
        std::printf("%-34s %9.3f ms  %8.1f GB/s  %5.1f%% of copy\n", r.name.c_str(), r.ms, gbps,
                    copy_gbps > 0 ? 100.0 * gbps / copy_gbps : 0.0);
    }
    std::fflush(stdout);
}

}  // namespace

int run_benchmarks(int argc, char** argv) {
    std::string json_path;
    std::string only;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--json FILE] [--only NAME_SUBSTRING]\n", argv[0]);
            return 2;
        }
    }
#if !MP_CUDA
    std::printf("bench_kernels: built without CUDA; the kernel benchmarks need a GPU\n");
    return 0;
#else
    if (!cuda_available()) {
        std::printf("bench_kernels: no GPU visible; the kernel benchmarks need one\n");
        return 0;
    }
    const Device gpu = Device::cuda(0);
    const int64_t B = 16, T = 1024, C = 768, H = 12, V = 50257, N = B * T;
    Generator gen(0);
    auto randn = [&](const Shape& shape, double std = 1.0) { return Tensor::randn(shape, gen, 0.0, std, DType::Float32, gpu); };
    std::vector<Result> results;
    double copy_gbps = 0;
    auto run = [&](const std::string& name, double bytes, double flops, const std::function<void()>& fn, int reps = 20) {
        if (!only.empty() && name.find(only) == std::string::npos && name != "copy_1GiB") return;
        Result r{name, time_ms(fn, reps), bytes, flops};
        if (name == "copy_1GiB") copy_gbps = r.bytes / r.ms / 1e6;
        print_row(r, copy_gbps);
        results.push_back(r);
    };

    {  // the ceiling every memory-bound kernel is compared with
        Tensor src = randn({int64_t(1) << 28});
        Tensor dst = Tensor::empty(src.shape(), DType::Float32, gpu);
        run("copy_1GiB", 2.0 * src.nbytes(), 0, [&] { dst.copy_from(src); });
    }
    {
        Tensor x = randn({N, C}), w = randn({4 * C, C});
        for (MatmulPrecision precision : {MatmulPrecision::Exact, MatmulPrecision::TF32}) {
            set_matmul_precision(precision);
            run(precision == MatmulPrecision::Exact ? "gemm_fc_fp32" : "gemm_fc_tf32", 0, 2.0 * N * C * 4 * C,
                [&] { ops::matmul(x, w, false, true); });
        }
        set_matmul_precision(MatmulPrecision::Exact);
    }
    {
        Tensor x = randn({N, C}), gamma = randn({C}), beta = randn({C}), dy = randn({N, C});
        run("layernorm_fwd", 2.0 * N * C * 4, 0, [&] { ops::layernorm(x, gamma, beta); });
        ops::LayerNormResult saved = ops::layernorm(x, gamma, beta);
        run("layernorm_bwd", 3.0 * N * C * 4, 0, [&] { ops::layernorm_backward(dy, x, gamma, saved.mean, saved.rstd); });
    }
    {
        Tensor scores = randn({B * H * T, T});
        run("softmax_fwd_attn", 2.0 * scores.nbytes(), 0, [&] { ops::softmax(scores); });
        Tensor causal = scores.reshape({B * H, T, T});
        // The causal kernel reads only the unmasked half but writes every element.
        run("causal_softmax_fwd_attn", 1.5 * scores.nbytes(), 0, [&] { ops::causal_softmax(causal, 0.125); });
    }
    {
        Tensor h = randn({N, 4 * C}), dy = randn({N, 4 * C});
        run("gelu_fwd", 2.0 * h.nbytes(), 0, [&] { ops::gelu(h); });
        run("gelu_bwd", 3.0 * h.nbytes(), 0, [&] { ops::gelu_backward(h, dy); });
        run("add", 3.0 * h.nbytes(), 0, [&] { ops::add(h, dy); });
        Tensor bias = randn({4 * C});
        run("bias_add", 2.0 * h.nbytes(), 0, [&] { ops::bias_add(h, bias); });
        run("sum_rows", 1.0 * h.nbytes(), 0, [&] { ops::sum_rows(h); });
    }
    // Token ids and targets: random in [0, V), checked once here, outside the timed region; the
    // timed calls are the kernels alone (the ops add a queued range check, timed on its own).
    Tensor target_ids = Tensor::uniform({N}, gen, 0.0, 1.0, DType::Float32, Device::cpu());
    {
        std::vector<int32_t> ids(N);
        std::vector<float> u = target_ids.to_vector<float>();
        for (int64_t i = 0; i < N; ++i) ids[i] = std::min<int32_t>(static_cast<int32_t>(u[i] * V), V - 1);
        target_ids = Tensor::from_vector(ids, {B, T}, gpu);
    }
    synchronize(gpu);  // nothing queued before this point may be timed
    {
        Tensor logits = randn({N, V});
        Tensor targets = target_ids.reshape({N});
        ops::cross_entropy_forward(logits, targets);
        synchronize(gpu);  // the targets are valid (throws otherwise)
        Tensor losses = Tensor::empty({N}, DType::Float32, gpu), lse = Tensor::empty({N}, DType::Float32, gpu);
        Tensor dlogits = Tensor::empty({N, V}, DType::Float32, gpu);
        Tensor dlosses = Tensor::full({N}, 1.0 / N, DType::Float32, gpu);
        cudaStream_t stream = compute_stream(0);
        // Forward reads the logits once; backward reads them again and writes dlogits.
        run("crossentropy_fwd_bwd", 3.0 * logits.nbytes(), 0, [&] {
            kernels::cuda::cross_entropy_forward(logits.data<float>(), targets.data<int32_t>(), losses.data<float>(),
                                                 lse.data<float>(), N, V, -100, stream);
            kernels::cuda::cross_entropy_backward(logits.data<float>(), targets.data<int32_t>(), lse.data<float>(),
                                                  dlosses.data<float>(), dlogits.data<float>(), N, V, -100, stream);
        }, 10);
        // What the op adds to that: the queued target check (reads 4 B per target; launch-bound).
        run("index_check_targets", 4.0 * N, 0, [&] {
            check_index_range(targets, 0, V, -100, [](int64_t, int32_t) { return std::string("bad target"); });
        });
        raise_device_errors(gpu);
    }
    {
        const int64_t P = 124000000;
        Tensor p = randn({P}, 0.02), g = randn({P}), m = Tensor::zeros({P}, DType::Float32, gpu),
               v = Tensor::zeros({P}, DType::Float32, gpu);
        int64_t step = 0;
        run("adamw_step_124M", 7.0 * P * 4, 0, [&] { ops::adamw_step_(p, g, m, v, ++step, 1e-4, 0.9, 0.999, 1e-8, 0.1); });
    }
    {
        Tensor wte = randn({V, C}), dout = randn({N, C});
        Tensor out = Tensor::empty({N, C}, DType::Float32, gpu), dwte = Tensor::empty({V, C}, DType::Float32, gpu);
        const size_t workspace_bytes = kernels::cuda::embedding_backward_workspace_bytes(N, V);
        Tensor workspace = Tensor::empty({static_cast<int64_t>((workspace_bytes + 3) / 4)}, DType::Int32, gpu);
        cudaStream_t stream = compute_stream(0);
        run("embedding_fwd", 2.0 * N * C * 4, 0, [&] {
            kernels::cuda::embedding_forward(target_ids.data<int32_t>(), wte.data<float>(), out.data<float>(), N, V, C,
                                             stream);
        });
        // Reads dout once and writes all of dwte (rows of ids that never occur are zeroed).
        run("embedding_bwd", 4.0 * N * C + 4.0 * V * C, 0, [&] {
            kernels::cuda::embedding_backward(target_ids.data<int32_t>(), dout.data<float>(), dwte.data<float>(), N, V, C,
                                              /*accumulate=*/false, workspace.raw_data(), workspace_bytes, stream);
        });
    }
    {
        Tensor qkv = randn({B, T, 3 * C});
        run("split_qkv_heads", 2.0 * qkv.nbytes(), 0, [&] { ops::split_qkv_heads(qkv, H); });
    }
    // Fused causal attention (cuDNN SDPA, bfloat16) at GPT-2's B 8, T 1024, H 12, D 64 against
    // PyTorch's scaled_dot_product_attention(is_causal=True): flops counted as the causal floor
    // (forward 4·B·H·T²·D/2, backward 10·B·H·T²·D/2), so TFLOP/s is against the masked work only.
    if (ops::fused_attention_compiled()) {
        const int64_t AB = 8, D = C / H;
        Tensor qkv = randn({AB, T, 3 * C}, 0.5);
        Tensor dout = randn({AB, T, C});
        Tensor qkv_bf16 = qkv.to(Device::cpu()).to(DType::BFloat16).to(gpu);
        Tensor dout_bf16 = dout.to(Device::cpu()).to(DType::BFloat16).to(gpu);
        const double forward_flops = 4.0 * AB * H * T * T * D / 2;
        const ops::FusedAttentionSupport support = ops::fused_attention_support(qkv_bf16, H);
        if (!support.supported) {
            std::printf("attention_fused: not run: %s\n", support.reason.c_str());
        } else {
            ops::FusedAttentionOutput fused = ops::causal_attention_fused(qkv_bf16, H);
            run("attention_fused_fwd_bf16", 0, forward_flops, [&] { ops::causal_attention_fused(qkv_bf16, H); });
            run("attention_fused_bwd_bf16", 0, 2.5 * forward_flops, [&] {
                ops::causal_attention_fused_backward(qkv_bf16, fused.out, fused.stats, dout_bf16, H);
            });
        }
    } else {
        std::printf("attention_fused: not run: built without cudnn-frontend (make deps, then rebuild)\n");
    }

    MemoryStats stats = cuda_allocator(0).stats();
    std::printf("cuda allocator: peak %.2f GiB, %llu cudaMalloc calls, %llu cache hits\n",
                stats.peak_bytes / double(1 << 30), (unsigned long long)stats.system_allocs,
                (unsigned long long)stats.cache_hits);
    if (!json_path.empty()) {
        std::ofstream out(json_path);
        out << "{\n";
        for (size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            out << "  \"" << r.name << "\": {\"ms\": " << r.ms << ", \"bytes\": " << r.bytes << ", \"flops\": " << r.flops
                << "}" << (i + 1 < results.size() ? "," : "") << "\n";
        }
        out << "}\n";
        if (!out) {
            std::fprintf(stderr, "bench_kernels: could not write %s\n", json_path.c_str());
            return 1;
        }
    }
    return 0;
#endif
}

int main(int argc, char** argv) {
    try {
        return run_benchmarks(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_kernels: %s\n", e.what());
        return 1;
    }
}
