// Kernel benchmarks at GPT-2-small shapes (B·T = 16384 rows, C = 768, 4C = 3072, V = 50257,
// 12 heads, T = 1024) on GPU 0: median time over repetitions, achieved GB/s against each op's
// byte floor, the fraction of the device-to-device copy bandwidth measured in this same run,
// and TFLOP/s for GEMMs. fp32 rows, TF32 GEMMs, and bf16 rows (the mixed-precision paths: bf16
// activations, float32 statistics, masters and optimizer state) beside them. Writes one JSON
// object per case to --json FILE for bench/report.py, which sets them beside PyTorch eager
// measured in the same run (bench/torch_ops.py, same row names). Inputs are random (never zeros)
// and validated before the timed region: the timed work never waits on the host (except
// clip_grad_norm, which reads the norm back as the trainer does). A row that cannot run (an
// exception while it is timed or while its group is set up, or cuBLASLt declining a fused linear)
// is reported as that row's error; the others still run, and the exit status is then 1.
// --only NAME_SUBSTRING times the matching rows alone (and the copy row, the bandwidth ceiling).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/optimizer.h"
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
    double bytes;           // floor: bytes the op must move (0 for GEMMs)
    double flops;           // 2mnk for GEMMs, else 0
    std::string precision;  // fp32 | tf32 | bf16, from the name: the peak report.py compares TFLOP/s with
    std::string error;      // why the row did not run (then ms is meaningless)
};

// The precision whose peak a FLOP-counted row is held against: named by its suffix.
[[maybe_unused]] std::string precision_of(const std::string& name) {  // unused in a CPU-only build
    if (name.find("_bf16") != std::string::npos) return "bf16";
    if (name.find("_tf32") != std::string::npos) return "tf32";
    return "fp32";
}

// A JSON string literal: quotes and backslashes escaped, control characters (newlines) made spaces.
[[maybe_unused]] std::string json_string(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\', out += c;
        else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
        else out += c;
    }
    return out + "\"";
}

// GPT-2 124M's parameters as the model holds them (tied head: 148 tensors, 124,439,808 values):
// wte, wpe, then per block ln_1 (weight, bias), attn.c_attn (weight, bias), attn.c_proj, ln_2,
// mlp.c_fc, mlp.c_proj, then ln_f. bench/torch_ops.py writes out the same list.
[[maybe_unused]] std::vector<Shape> gpt2_parameter_shapes(int64_t vocab, int64_t context, int64_t channels,
                                                           int64_t layers) {
    const int64_t c = channels;
    std::vector<Shape> shapes{{vocab, c}, {context, c}};
    for (int64_t l = 0; l < layers; ++l) {
        for (const Shape& shape : std::vector<Shape>{{c}, {c}, {3 * c, c}, {3 * c}, {c, c}, {c}, {c}, {c},
                                                     {4 * c, c}, {4 * c}, {c, 4 * c}, {c}})
            shapes.push_back(shape);
    }
    shapes.push_back({c});
    shapes.push_back({c});
    return shapes;
}

#if MP_CUDA
// A start and a stop event, destroyed however the timing ends (a row's exception included).
struct EventPair {
    cudaEvent_t start = nullptr, stop = nullptr;
    EventPair() {
        CUDA_CHECK(cudaEventCreate(&start));
        CUDA_CHECK(cudaEventCreate(&stop));
    }
    ~EventPair() {
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
    }
    EventPair(const EventPair&) = delete;
    EventPair& operator=(const EventPair&) = delete;
};

// Median over `reps` timed runs of fn (after `warmup` untimed runs), each timed by CUDA events
// on the compute stream so only GPU time counts.
double time_ms(const std::function<void()>& fn, int reps = 20, int warmup = 5) {
    cudaStream_t stream = compute_stream(0);
    EventPair events;
    for (int i = 0; i < warmup; ++i) fn();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<float> times;
    for (int i = 0; i < reps; ++i) {
        CUDA_CHECK(cudaEventRecord(events.start, stream));
        fn();
        CUDA_CHECK(cudaEventRecord(events.stop, stream));
        CUDA_CHECK(cudaEventSynchronize(events.stop));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, events.start, events.stop));
        times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}
#endif

[[maybe_unused]] void print_row(const Result& r, double copy_gbps) {  // unused in a CPU-only build
    if (!r.error.empty()) {
        std::printf("%-34s not run: %s\n", r.name.c_str(), r.error.c_str());
    } else if (r.flops > 0) {
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
    auto selected = [&](const std::string& name) {
        return only.empty() || name.find(only) != std::string::npos || name == "copy_1GiB";
    };
    auto any_selected = [&](const std::vector<std::string>& names) {
        return std::any_of(names.begin(), names.end(), selected);
    };
    // A row that did not run: its reason goes into the table and the JSON (never a crash).
    auto fail_row = [&](const std::string& name, const std::string& reason) {
        if (!selected(name)) return;
        Result r{name, 0, 0, 0, precision_of(name), reason};
        print_row(r, copy_gbps);
        results.push_back(r);
    };
    auto run = [&](const std::string& name, double bytes, double flops, const std::function<void()>& fn, int reps = 20) {
        if (!selected(name)) return;
        Result r{name, 0, bytes, flops, precision_of(name), ""};
        try {
            r.ms = time_ms(fn, reps);
        } catch (const std::exception& e) {
            r.error = e.what();
        }
        if (name == "copy_1GiB" && r.error.empty()) copy_gbps = r.bytes / r.ms / 1e6;
        print_row(r, copy_gbps);
        results.push_back(r);
    };
    // A group of rows sharing inputs, set up only when one of them is selected. An exception while
    // setting up (out of memory, a CUDA error) becomes the error of each of its rows not yet reported,
    // and the rows after it still run.
    auto group = [&](const std::vector<std::string>& names, const std::function<void()>& body) {
        if (!any_selected(names)) return;
        const size_t before = results.size();
        try {
            body();
        } catch (const std::exception& e) {
            for (const std::string& name : names) {
                const bool reported = std::any_of(results.begin() + static_cast<std::ptrdiff_t>(before), results.end(),
                                                  [&](const Result& r) { return r.name == name; });
                if (!reported) fail_row(name, std::string("setup failed: ") + e.what());
            }
        }
    };
    auto randn_bf16 = [&](const Shape& shape, double std = 1.0) {
        return ops::cast(randn(shape, std), DType::BFloat16);
    };
    cudaStream_t stream = compute_stream(0);

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
    // bfloat16 at the MLP's c_fc shape (rows x 768 -> 3072), float32 accumulation: the plain product,
    // the fused linear forward (cuBLASLt's BIAS and GELU_AUX_BIAS epilogues: y, and for BiasGelu also
    // the pre-activation, written once), and the mixed-precision gradients — the weight's as a GEMM
    // with bf16 operands into its float32 master gradient with beta 1 (in place, no separate add),
    // the bias's as deterministic column sums added to its float32 gradient. Floors: 2·rows·in·out
    // flops for the GEMMs; the bias gradient reads dy once (2 B per element) and updates 4·out B.
    group({"gemm_fc_bf16", "linear_bias_fwd_bf16", "linear_bias_gelu_fwd_bf16", "gemm_wgrad_accum_bf16",
           "bias_grad_bf16"}, [&] {
        const int64_t in = C, out = 4 * C;
        const double flops = 2.0 * N * in * out;
        Tensor x = randn_bf16({N, in}), w = randn_bf16({out, in}, 0.02), b = randn_bf16({out}, 0.02);
        Tensor y = Tensor::empty({N, out}, DType::BFloat16, gpu), pre = Tensor::empty({N, out}, DType::BFloat16, gpu);
        run("gemm_fc_bf16", 0, flops, [&] { ops::matmul(x, w, false, true); });
        const std::pair<const char*, kernels::LinearEpilogue> fused[] = {
            {"linear_bias_fwd_bf16", kernels::LinearEpilogue::Bias},
            {"linear_bias_gelu_fwd_bf16", kernels::LinearEpilogue::BiasGelu}};
        for (const auto& [name, epilogue] : fused) {
            if (!selected(name)) continue;
            const kernels::LinearEpilogue chosen = epilogue;  // a structured binding cannot be captured in C++17
            auto forward = [&] {
                return kernels::cuda::linear_forward(x.data<bfloat16>(), w.data<bfloat16>(), b.data<bfloat16>(),
                                                     y.data<bfloat16>(), pre.data<bfloat16>(), N, in, out, chosen,
                                                     /*allow_tf32=*/false, stream);
            };
            bool accepted = false;
            try {
                accepted = forward();
            } catch (const std::exception& e) {
                fail_row(name, e.what());
                continue;
            }
            if (!accepted) {
                fail_row(name, "cuBLASLt has no algorithm for this epilogue at these shapes (linear_forward "
                               "returned false: the op falls back to GEMM + bias (+ GELU) kernels)");
                continue;
            }
            run(name, 0, flops, [&] {
                if (!forward()) throw std::runtime_error("linear_forward returned false between repetitions");
            });
        }
        Tensor dy = randn_bf16({N, out});
        Tensor dweight = Tensor::zeros({out, in}, DType::Float32, gpu);
        Tensor dbias = Tensor::zeros({out}, DType::Float32, gpu);
        // dW (out x in) += dyᵀ · x: op(A) = dyᵀ with dy stored (rows x out), B = x (rows x in).
        run("gemm_wgrad_accum_bf16", 0, flops, [&] {
            kernels::cuda::gemm(/*trans_a=*/true, /*trans_b=*/false, out, in, N, 1.0f, dy.data<bfloat16>(), out,
                                x.data<bfloat16>(), in, 1.0f, dweight.data<float>(), in, /*allow_tf32=*/false, stream);
        });
        const size_t bias_floats = kernels::cuda::bias_grad_workspace_floats(N, out);
        Tensor bias_workspace =
            Tensor::empty({static_cast<int64_t>(std::max<size_t>(bias_floats, 1))}, DType::Float32, gpu);
        run("bias_grad_bf16", 2.0 * N * out + 8.0 * out, 0, [&] {
            kernels::cuda::bias_grad(dy.data<bfloat16>(), dbias.data<float>(), N, out, /*accumulate=*/true,
                                     bias_floats == 0 ? nullptr : bias_workspace.data<float>(), stream);
        });
    });
    {
        Tensor x = randn({N, C}), gamma = randn({C}), beta = randn({C}), dy = randn({N, C});
        run("layernorm_fwd", 2.0 * N * C * 4, 0, [&] { ops::layernorm(x, gamma, beta); });
        ops::LayerNormResult saved = ops::layernorm(x, gamma, beta);
        run("layernorm_bwd", 3.0 * N * C * 4, 0, [&] { ops::layernorm_backward(dy, x, gamma, saved.mean, saved.rstd); });
    }
    // bfloat16 tensors, float32 mean and rstd: half the fp32 rows' bytes (floors as theirs, 2 B per element).
    group({"layernorm_fwd_bf16", "layernorm_bwd_bf16"}, [&] {
        Tensor x = randn_bf16({N, C}), gamma = randn_bf16({C}), beta = randn_bf16({C}), dy = randn_bf16({N, C});
        Tensor y = Tensor::empty({N, C}, DType::BFloat16, gpu), dx = Tensor::empty({N, C}, DType::BFloat16, gpu);
        Tensor dgamma = Tensor::empty({C}, DType::BFloat16, gpu), dbeta = Tensor::empty({C}, DType::BFloat16, gpu);
        Tensor mean = Tensor::empty({N}, DType::Float32, gpu), rstd = Tensor::empty({N}, DType::Float32, gpu);
        const int64_t workspace_floats = kernels::cuda::layernorm_backward_workspace_floats(N, C);
        Tensor workspace = Tensor::empty({std::max<int64_t>(workspace_floats, 1)}, DType::Float32, gpu);
        auto forward = [&] {
            kernels::cuda::layernorm_forward(x.data<bfloat16>(), gamma.data<bfloat16>(), beta.data<bfloat16>(),
                                             y.data<bfloat16>(), mean.data<float>(), rstd.data<float>(), N, C, 1e-5,
                                             stream);
        };
        run("layernorm_fwd_bf16", 2.0 * N * C * 2, 0, forward);
        forward();  // the saved statistics for the backward (if only the backward was selected)
        run("layernorm_bwd_bf16", 3.0 * N * C * 2, 0, [&] {
            kernels::cuda::layernorm_backward(dy.data<bfloat16>(), x.data<bfloat16>(), gamma.data<bfloat16>(),
                                              mean.data<float>(), rstd.data<float>(), dx.data<bfloat16>(),
                                              dgamma.data<bfloat16>(), dbeta.data<bfloat16>(), workspace.data<float>(),
                                              N, C, stream);
        });
    });
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
    int64_t distinct_ids = 0;  // the embedding rows an accumulating backward touches
    {
        std::vector<int32_t> ids(N);
        std::vector<float> u = target_ids.to_vector<float>();
        for (int64_t i = 0; i < N; ++i) ids[i] = std::min<int32_t>(static_cast<int32_t>(u[i] * V), V - 1);
        distinct_ids = static_cast<int64_t>(std::set<int32_t>(ids.begin(), ids.end()).size());
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
    // bfloat16 logits (float32 losses and logsumexp), the targets above (already checked). The
    // separate kernels as the fp32 row (floor counted the same way: 3 passes of 2 B per element);
    // then the fused one-pass kernel (llm.c's layout: the gradient written over the logits, dloss
    // = 1 · the device-side mean weight), whose floor is one read and one write of each row — its
    // second sweep reads the row back from L2 (50304 bf16 = 100 KB). Each repetition overwrites
    // the logits with their gradient and the next one reads that: the same work (the kernel has no
    // value-dependent branches), finite values. Padded rows (stride 50304, llm.c's vocabulary
    // padding) read the 50257 real columns and write all 50304.
    group({"crossentropy_fwd_bwd_bf16", "crossentropy_fused_bf16", "crossentropy_fused_bf16_pad50304"}, [&] {
        const int64_t padded = 50304;  // 50257 rounded up to a multiple of 128
        Tensor targets = target_ids.reshape({N});
        Tensor losses = Tensor::empty({N}, DType::Float32, gpu), lse = Tensor::empty({N}, DType::Float32, gpu);
        Tensor dlosses = Tensor::full({N}, 1.0 / N, DType::Float32, gpu);
        Tensor mean_weight = Tensor::empty({1}, DType::Float32, gpu);
        kernels::cuda::cross_entropy_mean_weight(targets.data<int32_t>(), N, -100, mean_weight.data<float>(), stream);
        if (any_selected({"crossentropy_fwd_bwd_bf16", "crossentropy_fused_bf16"})) {
            Tensor logits = randn_bf16({N, V});
            Tensor dlogits = Tensor::empty({N, V}, DType::BFloat16, gpu);
            run("crossentropy_fwd_bwd_bf16", 3.0 * N * V * 2, 0, [&] {
                kernels::cuda::cross_entropy_forward(logits.data<bfloat16>(), targets.data<int32_t>(),
                                                     losses.data<float>(), lse.data<float>(), N, V, -100, stream);
                kernels::cuda::cross_entropy_backward(logits.data<bfloat16>(), targets.data<int32_t>(),
                                                      lse.data<float>(), dlosses.data<float>(),
                                                      dlogits.data<bfloat16>(), N, V, -100, stream);
            }, 10);
            run("crossentropy_fused_bf16", 2.0 * N * V * 2, 0, [&] {
                kernels::cuda::cross_entropy_fused(logits.data<bfloat16>(), targets.data<int32_t>(),
                                                   losses.data<float>(), N, V, V, -100,
                                                   /*dloss=*/mean_weight.data<float>(), /*write_gradient=*/true,
                                                   stream);
            }, 10);
        }
        if (selected("crossentropy_fused_bf16_pad50304")) {
            Tensor logits = randn_bf16({N, padded});
            run("crossentropy_fused_bf16_pad50304", 2.0 * N * (V + padded), 0, [&] {
                kernels::cuda::cross_entropy_fused(logits.data<bfloat16>(), targets.data<int32_t>(),
                                                   losses.data<float>(), N, V, padded, -100,
                                                   /*dloss=*/mean_weight.data<float>(), /*write_gradient=*/true,
                                                   stream);
            }, 10);
        }
    });
    {
        const int64_t P = 124000000;
        Tensor p = randn({P}, 0.02), g = randn({P}), m = Tensor::zeros({P}, DType::Float32, gpu),
               v = Tensor::zeros({P}, DType::Float32, gpu);
        int64_t step = 0;
        run("adamw_step_124M", 7.0 * P * 4, 0, [&] { ops::adamw_step_(p, g, m, v, ++step, 1e-4, 0.9, 0.999, 1e-8, 0.1); });
    }
    // GPT-2 124M's 148 parameter tensors, each its own allocation as in the model, float32 masters,
    // gradients and AdamW state (as in bf16 mixed precision too): one multi-tensor AdamW step (28 B
    // per parameter, as the flat row above), the global gradient norm's sum of squares (reads 4 B
    // per parameter), and clipping as nn::clip_grad_norm does it — that norm, read back to the host
    // (the one wait, timed with it), then every gradient scaled in place (another 8 B per parameter).
    // max_norm 1 (GPT-2's): random gradients have norm ~1e4, so the first repetition scales them to
    // norm 1 and each later one by 1 / (1 + 1e-6): every repetition scales, as PyTorch's always does.
    group({"adamw_gpt2_148_tensors", "grad_norm_gpt2_148_tensors", "clip_grad_norm_gpt2_148_tensors"}, [&] {
        const std::vector<Shape> shapes = gpt2_parameter_shapes(V, T, C, 12);
        std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs;
        std::vector<kernels::AdamWBuffers> buffers;
        std::vector<const float*> grad_pointers;
        std::vector<int64_t> sizes;
        int64_t P = 0;
        for (const Shape& shape : shapes) {
            params.push_back(randn(shape, 0.02));
            grads.push_back(randn(shape));
            exp_avgs.push_back(Tensor::zeros(shape, DType::Float32, gpu));
            exp_avg_sqs.push_back(Tensor::zeros(shape, DType::Float32, gpu));
            buffers.push_back({params.back().data<float>(), grads.back().data<float>(), exp_avgs.back().data<float>(),
                               exp_avg_sqs.back().data<float>(), params.back().numel()});
            grad_pointers.push_back(grads.back().data<float>());
            sizes.push_back(grads.back().numel());
            P += grads.back().numel();
        }
        if (shapes.size() != 148 || P != 124439808)
            throw std::logic_error("gpt2_parameter_shapes: " + std::to_string(shapes.size()) + " tensors, " +
                                   std::to_string(P) + " values; GPT-2 124M has 148 and 124439808");
        const int64_t count = static_cast<int64_t>(shapes.size());
        int64_t step = 0;
        run("adamw_gpt2_148_tensors", 28.0 * P, 0, [&] {
            kernels::cuda::adamw_step_multi_tensor(buffers.data(), count, ++step, 1e-4, 0.9, 0.999, 1e-8, 0.1, stream);
        });
        const size_t norm_floats = kernels::cuda::sum_squares_multi_tensor_workspace_floats(sizes.data(), count);
        Tensor norm_workspace =
            Tensor::empty({static_cast<int64_t>(std::max<size_t>(norm_floats, 1))}, DType::Float32, gpu);
        Tensor sum_of_squares = Tensor::empty({1}, DType::Float32, gpu);
        run("grad_norm_gpt2_148_tensors", 4.0 * P, 0, [&] {
            kernels::cuda::sum_squares_multi_tensor(sum_of_squares.data<float>(), grad_pointers.data(), sizes.data(),
                                                    count, norm_floats == 0 ? nullptr : norm_workspace.data<float>(),
                                                    stream);
        });
        run("clip_grad_norm_gpt2_148_tensors", 12.0 * P, 0, [&] {
            const double max_norm = 1.0, norm = ops::global_l2_norm(grads);
            const double coefficient = max_norm / (norm + 1e-6);
            if (coefficient < 1.0) ops::scale_(grads, coefficient);
        });
    });
    {
        Tensor wte = randn({V, C}), dout = randn({N, C});
        Tensor out = Tensor::empty({N, C}, DType::Float32, gpu), dwte = Tensor::empty({V, C}, DType::Float32, gpu);
        const size_t workspace_bytes = kernels::cuda::embedding_backward_workspace_bytes(N, V);
        Tensor workspace = Tensor::empty({static_cast<int64_t>((workspace_bytes + 3) / 4)}, DType::Int32, gpu);
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
    // bfloat16 tables and gradients, the same ids: the lookup (2 B read + 2 B written per output
    // element); the backward written into a bfloat16 gradient (reads dout once, writes all of dwte,
    // as the fp32 row); and the mixed-precision backward as training runs it — bfloat16 dout summed
    // in float32 and added to the float32 master gradient in place (accumulate: the tied head's
    // gradient is already there), which reads dout once and reads and writes only the rows whose ids
    // occur (4 + 4 B per element of each of those rows).
    group({"embedding_fwd_bf16", "embedding_bwd_bf16", "embedding_bwd_accum_bf16"}, [&] {
        Tensor wte = randn_bf16({V, C}, 0.02), dout = randn_bf16({N, C});
        Tensor out = Tensor::empty({N, C}, DType::BFloat16, gpu), dwte = Tensor::empty({V, C}, DType::BFloat16, gpu);
        Tensor dwte_master = Tensor::zeros({V, C}, DType::Float32, gpu);
        const size_t workspace_bytes = kernels::cuda::embedding_backward_workspace_bytes(N, V);
        Tensor workspace = Tensor::empty({static_cast<int64_t>((workspace_bytes + 3) / 4)}, DType::Int32, gpu);
        run("embedding_fwd_bf16", 2.0 * N * C * 2, 0, [&] {
            kernels::cuda::embedding_forward(target_ids.data<int32_t>(), wte.data<bfloat16>(), out.data<bfloat16>(), N,
                                             V, C, stream);
        });
        run("embedding_bwd_bf16", 2.0 * N * C + 2.0 * V * C, 0, [&] {
            kernels::cuda::embedding_backward(target_ids.data<int32_t>(), dout.data<bfloat16>(), dwte.data<bfloat16>(),
                                              N, V, C, /*accumulate=*/false, workspace.raw_data(), workspace_bytes,
                                              stream);
        });
        run("embedding_bwd_accum_bf16", 2.0 * N * C + 8.0 * distinct_ids * C, 0, [&] {
            kernels::cuda::embedding_backward(target_ids.data<int32_t>(), dout.data<bfloat16>(),
                                              dwte_master.data<float>(), N, V, C, /*accumulate=*/true,
                                              workspace.raw_data(), workspace_bytes, stream);
        });
    });
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
    std::vector<std::string> failed;
    for (const Result& r : results)
        if (!r.error.empty()) failed.push_back(r.name);
    if (!json_path.empty()) {
        // One object per row; "_meta" (not a row) names the device, for report.py's datasheet peaks.
        cudaDeviceProp properties;
        CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
        std::ofstream out(json_path);
        out << "{\n  \"_meta\": {\"device\": " << json_string(properties.name) << "}"
            << (results.empty() ? "" : ",") << "\n";
        for (size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            out << "  " << json_string(r.name) << ": {";
            if (r.error.empty()) out << "\"ms\": " << r.ms;
            else out << "\"ms\": null, \"error\": " << json_string(r.error);
            out << ", \"bytes\": " << r.bytes << ", \"flops\": " << r.flops << ", \"precision\": \"" << r.precision
                << "\"}" << (i + 1 < results.size() ? "," : "") << "\n";
        }
        out << "}\n";
        if (!out) {
            std::fprintf(stderr, "bench_kernels: could not write %s\n", json_path.c_str());
            return 1;
        }
    }
    if (!failed.empty()) {
        std::string names;
        for (const std::string& name : failed) names += (names.empty() ? "" : ", ") + name;
        std::fprintf(stderr, "bench_kernels: %zu row(s) did not run: %s\n", failed.size(), names.c_str());
        return 1;
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
