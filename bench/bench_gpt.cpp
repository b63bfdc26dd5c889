// End-to-end GPT training benchmark: whole training steps (forward, cross-entropy, tape backward,
// clip 1.0, AdamW) of the GPT-2 124M shape on random tokens, one process, per batch size:
// median ms/step, tokens/s, MFU and the allocator's peak bytes, in fp32, TF32 or bf16 mixed precision.
// bench/torch_gpt.py runs the same model in PyTorch (eager and torch.compile), and
// bench/run_bench_gpt.sh joins both into one table (same run).
//
// --precision bf16 is the trainer's mixed precision (train/build.cpp, pipeline/engine.cpp):
// float32 master weights, gradients and AdamW state; layers compute with bfloat16 copies of the
// weights, converted once per step, so activations are bfloat16; the loss is float32.
//
// MFU = flops per token × tokens/s / peak, with flops per token = 6·N + 6·L·C·T, where
// N = parameters outside the token/position embedding tables (those are lookups, not matmuls;
// the untied head is counted), L layers, C channels, T context; 6·L·C·T is the attention score
// and weighted-sum matmuls (forward + backward) over the causal lower triangle only (half of
// the full 12·L·C·T). Peaks are datasheet figures (tensor/peak_flops.h); unknown device: MFU "n/a".
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "base/format.h"
#include "kernels/gemm.h"
#include "nn/layers.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "tensor/allocator.h"
#include "tensor/device_context.h"
#include "tensor/peak_flops.h"
#include "train/build.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

using namespace mp;

namespace {

// ---------------------------------------------------------------- options
struct Options {
    std::vector<int64_t> batches{8, 16};
    int64_t timed_steps = 10;
    int64_t warmup_steps = 3;
    train::Precision precision = train::Precision::Fp32;
    train::DeviceChoice device = train::DeviceChoice::Cuda;  // cuda | cpu (no auto: a benchmark names its device)
    std::string json_path;
    int threads = 0;  // CPU threads; 0 leaves OpenMP's default
    nn::GPTConfig model = gpt2_small();
    bool tiny = false;

    static nn::GPTConfig gpt2_small() {
        nn::GPTConfig c;
        c.vocab = 50257;
        c.context = 1024;
        c.layers = 12;
        c.heads = 12;
        c.channels = 768;
        c.seed = 1337;
        return c;
    }
    // What CI runs on a CPU: a couple of seconds.
    void make_tiny() {
        tiny = true;
        model.vocab = 96;
        model.context = 32;
        model.layers = 2;
        model.heads = 2;
        model.channels = 32;
        batches = {4};
        timed_steps = 3;
        warmup_steps = 2;  // the first two steps start OpenBLAS's threads and fill the caches
    }
};

// The hyper-parameters of the benchmark's AdamW; bench/torch_gpt.py uses the same.
constexpr double kLearningRate = 3e-4, kBeta1 = 0.9, kBeta2 = 0.95, kEps = 1e-8, kWeightDecay = 0.1;
constexpr double kGradClip = 1.0;

int64_t parse_int(const std::string& option, const std::string& text) {
    char* end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0') throw std::invalid_argument(option + ": expected an integer, got '" + text + "'");
    return value;
}

std::vector<int64_t> parse_int_list(const std::string& option, const std::string& text) {
    std::vector<int64_t> values;
    std::stringstream stream(text);
    std::string item;
    while (std::getline(stream, item, ',')) values.push_back(parse_int(option, item));
    if (values.empty()) throw std::invalid_argument(option + ": expected a comma-separated list, got '" + text + "'");
    return values;
}

// --device: cuda or cpu, by the trainer's name table; auto is the trainer's alone (a benchmark says
// where it runs).
train::DeviceChoice parse_device(const std::string& text) {
    for (train::DeviceChoice choice : {train::DeviceChoice::Cuda, train::DeviceChoice::Cpu})
        if (text == name_of(choice)) return choice;
    throw std::invalid_argument("--device must be cuda or cpu, got '" + text + "'");
}

// One row per option: the parser reads it and --help prints it, so the two cannot drift.
struct OptionSpec {
    const char* name;
    const char* value_name;  // nullptr: a flag without a value
    const char* help;
    std::function<void(Options&, const std::string&)> apply;
};

const std::vector<OptionSpec>& option_table() {
    static const std::string precision_names = enum_names(train::Precision{}).joined("|");  // "fp32|tf32|bf16"
    static const std::string device_names =
        str(name_of(train::DeviceChoice::Cuda), "|", name_of(train::DeviceChoice::Cpu));  // "cuda|cpu"
    static const std::vector<OptionSpec> table = {
        {"--batch", "B[,B...]", "batch sizes, each run in turn (default 8,16)",
         [](Options& o, const std::string& v) { o.batches = parse_int_list("--batch", v); }},
        {"--steps", "N", "timed steps per batch size (default 10)",
         [](Options& o, const std::string& v) { o.timed_steps = parse_int("--steps", v); }},
        {"--warmup", "N", "untimed steps before them (default 3)",
         [](Options& o, const std::string& v) { o.warmup_steps = parse_int("--warmup", v); }},
        {"--precision", precision_names.c_str(),
         "fp32: exact float32 GEMMs; tf32: float32 GEMMs on TF32 tensor cores (GPU only, the CPU stays exact); "
         "bf16: mixed precision, float32 masters and bfloat16 compute copies (default fp32)",
         [](Options& o, const std::string& v) { o.precision = parse_enum<train::Precision>(v, "--precision"); }},
        {"--device", device_names.c_str(), "where to train (default cuda; without a GPU: says so and exits 0)",
         [](Options& o, const std::string& v) { o.device = parse_device(v); }},
        {"--json", "FILE", "write the results as JSON (for bench/report_gpt.py)",
         [](Options& o, const std::string& v) { o.json_path = v; }},
        {"--threads", "N", "CPU threads for OpenMP and OpenBLAS (default: OpenMP's)",
         [](Options& o, const std::string& v) { o.threads = static_cast<int>(parse_int("--threads", v)); }},
        {"--tiny", nullptr,
         "tiny shape for CI: 2 layers, 2 heads, 32 channels, context 32, vocab 96, batch 4, 2 + 3 steps",
         [](Options& o, const std::string&) { o.make_tiny(); }},
        {"--layers", "N", "override the model's layers (default 12)",
         [](Options& o, const std::string& v) { o.model.layers = parse_int("--layers", v); }},
        {"--heads", "N", "override the attention heads (default 12)",
         [](Options& o, const std::string& v) { o.model.heads = parse_int("--heads", v); }},
        {"--channels", "N", "override the channels (default 768)",
         [](Options& o, const std::string& v) { o.model.channels = parse_int("--channels", v); }},
        {"--context", "N", "override the context length T (default 1024)",
         [](Options& o, const std::string& v) { o.model.context = parse_int("--context", v); }},
        {"--vocab", "N", "override the vocabulary (default 50257)",
         [](Options& o, const std::string& v) { o.model.vocab = parse_int("--vocab", v); }},
    };
    return table;
}

void print_usage(const char* program) {
    std::printf("usage: %s [options]\n", program);
    for (const OptionSpec& spec : option_table()) {
        std::string left = std::string(spec.name) + (spec.value_name ? std::string(" ") + spec.value_name : "");
        std::printf("  %-28s %s\n", left.c_str(), spec.help);
    }
    std::printf("  %-28s %s\n", "--help", "this text");
    std::printf("--tiny sets its shape first; any other option given overrides it, wherever it stands.\n");
}

// Returns false after printing usage for --help; throws std::invalid_argument on a bad option.
bool parse_options(int argc, char** argv, Options& options) {
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
            print_usage(argv[0]);
            return false;
        }
        if (!std::strcmp(argv[i], "--tiny")) options.make_tiny();
    }
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--tiny")) continue;
        const OptionSpec* found = nullptr;
        for (const OptionSpec& spec : option_table())
            if (!std::strcmp(argv[i], spec.name)) found = &spec;
        if (found == nullptr) throw std::invalid_argument(std::string("unknown option '") + argv[i] + "' (see --help)");
        if (found->value_name == nullptr) {
            found->apply(options, "");
        } else {
            if (i + 1 >= argc)
                throw std::invalid_argument(std::string(found->name) + " needs a value: " + found->value_name);
            found->apply(options, argv[++i]);
        }
    }
    if (options.timed_steps < 1 || options.warmup_steps < 0)
        throw std::invalid_argument("--steps must be >= 1 and --warmup >= 0, got " +
                                    std::to_string(options.timed_steps) + " and " +
                                    std::to_string(options.warmup_steps));
    for (int64_t b : options.batches)
        if (b < 1)
            throw std::invalid_argument("--batch: every batch size must be >= 1, got " + join_ints(options.batches));
    if (options.threads < 0) throw std::invalid_argument("--threads must be >= 1 (or 0 for the default)");
    return true;
}

// ---------------------------------------------------------------- peak FLOP/s
// The datasheet peaks and find_peak live in tensor/peak_flops.h, shared with the trainer's step log.

// ---------------------------------------------------------------- the benchmark
struct BatchResult {
    int64_t batch = 0;
    std::string error;  // empty when the run finished
    double ms_median = 0, ms_min = 0, ms_max = 0;
    double tokens_per_second = 0;
    double mfu = NAN;  // NaN: unknown peak
    size_t peak_bytes = 0;
    double loss_first = NAN, loss_last = NAN;
};

struct RunInfo {
    std::string device_label;  // "cpu (2 threads)" / "NVIDIA H200"
    train::Precision precision = train::Precision::Fp32;
    double peak_flops = NAN;
    std::string peak_label;
    int64_t parameters = 0;         // every parameter
    int64_t matmul_parameters = 0;  // N of the formula: outside the embedding tables
    double flops_per_token = 0;
};

// `count` batches of random tokens (ids and, independently, targets in [0, vocab)), on `device`.
std::vector<std::pair<Tensor, Tensor>> random_batches(int64_t count, int64_t batch, const nn::GPTConfig& model,
                                                      Device device) {
    std::mt19937_64 rng(static_cast<uint64_t>(model.seed) * 1000003ULL + static_cast<uint64_t>(batch));
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model.vocab - 1));
    std::vector<std::pair<Tensor, Tensor>> batches;
    std::vector<int32_t> ids(static_cast<size_t>(batch * model.context)), targets(ids.size());
    for (int64_t i = 0; i < count; ++i) {
        for (int32_t& t : ids) t = token(rng);
        for (int32_t& t : targets) t = token(rng);
        batches.emplace_back(Tensor::from_vector(ids, {batch, model.context}, device),
                             Tensor::from_vector(targets, {batch, model.context}, device));
    }
    return batches;
}

// One training step as pipeline/engine.cpp does it on a single stage: forward under a tape,
// mean cross-entropy, backward, clip by the global norm, AdamW. Returns the (device) loss, float32
// in every precision. Under the caller's bf16 ComputeDTypeScope each weight is converted to its
// bfloat16 compute copy once per step (the cache), and the copies go before the optimizer moves
// the float32 masters they were made from — the engine's order.
Tensor train_step(nn::Sequential& model, nn::AdamW& optimizer, const std::vector<Tensor>& parameters,
                  const Tensor& ids, const Tensor& targets) {
    optimizer.zero_grad();
    nn::ComputeCopyCache compute_copies;
    autograd::Tape tape;
    Tensor loss;
    {
        autograd::TapeScope scope(tape);
        Tensor logits = model.forward(ids);
        loss = fn::cross_entropy(logits, targets);
    }
    tape.backward(loss);
    tape.clear();  // the activations go before the optimizer's step, as in the engine
    compute_copies.clear();
    nn::clip_grad_norm(parameters, kGradClip);
    optimizer.step();
    return loss;
}

BatchResult run_batch(const Options& options, int64_t batch, Device device, const RunInfo& info) {
    BatchResult result;
    result.batch = batch;
    const int64_t total_steps = options.warmup_steps + options.timed_steps;
    std::vector<std::pair<Tensor, Tensor>> data = random_batches(total_steps, batch, options.model, device);

    std::printf("  batch %lld: building the model and the optimizer on %s\n", (long long)batch, device.str().c_str());
    std::fflush(stdout);
    Allocator& allocator = allocator_for(device);
    allocator.reset_peak();  // the peak below: parameters, gradients, AdamW state and activations
    std::shared_ptr<nn::Sequential> model = nn::gpt(options.model);
    model->to(device);
    model->train();
    const std::vector<Tensor> parameters = model->parameters();  // float32 masters in every precision
    nn::AdamW optimizer(parameters, nn::AdamWOptions{kLearningRate, kBeta1, kBeta2, kEps, kWeightDecay});
    // The precision for this batch's steps, as the trainer holds it for a whole run (on the CPU, tf32
    // was turned into fp32 before: its GEMMs are exact).
    const train::PrecisionScope precision(info.precision);

    const double tokens_per_step = static_cast<double>(batch * options.model.context);
    std::vector<double> step_ms;
    for (int64_t step = 0; step < total_steps; ++step) {
        const bool timed = step >= options.warmup_steps;
        synchronize(device);
        const auto begin = std::chrono::steady_clock::now();
        Tensor loss = train_step(*model, optimizer, parameters, data[step].first, data[step].second);
        synchronize(device);  // the clock is read once the device has finished the step
        const double ms = 1000 * seconds_since(begin);
        double loss_value = loss.item();
        if (timed) {
            step_ms.push_back(ms);
            if (step == options.warmup_steps) result.loss_first = loss_value;
            result.loss_last = loss_value;
        }
        std::printf("  batch %lld step %lld/%lld%s: %9.1f ms  %9.0f tokens/s  loss %.4f\n", (long long)batch,
                    (long long)step + 1, (long long)total_steps, timed ? "" : " (warm-up)", ms,
                    tokens_per_step / (ms / 1e3), loss_value);
        std::fflush(stdout);
    }
    result.peak_bytes = allocator.stats().peak_bytes;

    std::vector<double> sorted = step_ms;
    std::sort(sorted.begin(), sorted.end());
    size_t n = sorted.size();
    result.ms_median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    result.ms_min = sorted.front();
    result.ms_max = sorted.back();
    result.tokens_per_second = tokens_per_step / (result.ms_median / 1e3);
    if (std::isfinite(info.peak_flops)) result.mfu = info.flops_per_token * result.tokens_per_second / info.peak_flops;
    return result;
}

// ---------------------------------------------------------------- JSON
std::string json_number(double value) {
    if (!std::isfinite(value)) return "null";
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "%.10g", value);
    return buffer;
}

std::string json_string(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) continue;  // no control characters in our strings
        out += c;
    }
    return out + "\"";
}

// The same fields as bench/torch_gpt.py writes; bench/report_gpt.py reads both.
bool write_json(const std::string& path, const Options& options, const RunInfo& info,
                const std::vector<BatchResult>& results) {
    std::ofstream out(path);
    const nn::GPTConfig& m = options.model;
    out << "{\n";
    out << "  \"system\": \"minipipe\",\n";
    out << "  \"device\": " << json_string(info.device_label) << ",\n";
    out << "  \"precision\": " << json_string(name_of(info.precision)) << ",\n";
    out << "  \"model\": {\"layers\": " << m.layers << ", \"heads\": " << m.heads << ", \"channels\": " << m.channels
        << ", \"context\": " << m.context << ", \"vocab\": " << m.vocab << "},\n";
    out << "  \"parameters\": " << info.parameters << ",\n";
    out << "  \"matmul_parameters\": " << info.matmul_parameters << ",\n";
    out << "  \"flops_per_token\": " << json_number(info.flops_per_token) << ",\n";
    out << "  \"flops_formula\": \"6*N + 6*L*C*T, N = parameters outside the embedding tables, causal attention\",\n";
    out << "  \"peak_flops\": " << json_number(info.peak_flops) << ",\n";
    out << "  \"peak_source\": " << json_string(info.peak_label) << ",\n";
    const char* wait_policy = std::getenv("OMP_WAIT_POLICY");  // moves CPU timings a lot on a busy machine
    out << "  \"omp_wait_policy\": " << json_string(wait_policy ? wait_policy : "unset") << ",\n";
    out << "  \"warmup_steps\": " << options.warmup_steps << ",\n";
    out << "  \"timed_steps\": " << options.timed_steps << ",\n";
    out << "  \"runs\": [\n";
    for (size_t i = 0; i < results.size(); ++i) {
        const BatchResult& r = results[i];
        out << "    {\"batch\": " << r.batch;
        if (!r.error.empty()) {
            out << ", \"error\": " << json_string(r.error);
        } else {
            out << ", \"ms_per_step\": " << json_number(r.ms_median) << ", \"ms_min\": " << json_number(r.ms_min)
                << ", \"ms_max\": " << json_number(r.ms_max)
                << ", \"tokens_per_s\": " << json_number(r.tokens_per_second)
                << ", \"mfu\": " << json_number(r.mfu) << ", \"peak_bytes\": " << r.peak_bytes
                << ", \"loss_first\": " << json_number(r.loss_first) << ", \"loss_last\": " << json_number(r.loss_last);
        }
        out << "}" << (i + 1 < results.size() ? "," : "") << "\n";
    }
    out << "  ]\n}\n";
    out.close();
    return static_cast<bool>(out);
}

}  // namespace

int run_benchmark(int argc, char** argv) {
    Options options;
    if (!parse_options(argc, argv, options)) return 0;

    Device device = Device::cpu();
    RunInfo info;
    info.precision = options.precision;
    if (options.device == train::DeviceChoice::Cuda) {
#if !MP_CUDA
        std::printf("bench_gpt: built without CUDA and no GPU to run on; use --device cpu to train on the CPU\n");
        return 0;
#else
        if (!cuda_available()) {
            std::printf("bench_gpt: no GPU visible; use --device cpu to train on the CPU\n");
            return 0;
        }
        device = Device::cuda(0);
        set_current_device(0);
        cudaDeviceProp properties;
        CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
        info.device_label = properties.name;
        if (const PeakEntry* entry = find_peak(info.device_label)) {
            const GemmMath math = train::gemm_math(options.precision);
            info.peak_flops = entry->for_math(math);
            info.peak_label = std::string(entry->label) + ", " + PeakEntry::math_label(math);
        } else {
            info.peak_label = "unknown device: not in the peak table";
        }
#endif
    } else {
        if (options.threads > 0) set_cpu_threads(options.threads);
        info.device_label =
            "cpu (" + std::to_string(cpu_threads()) + " threads, " + kernels::cpu::blas_description() + ")";
        info.peak_label = "CPU: no peak known";
        if (options.precision == train::Precision::Tf32) {
            std::printf("bench_gpt: TF32 does not apply on the CPU: GEMMs run in exact fp32\n");
            info.precision = train::Precision::Fp32;
        }
        // bf16 stays bf16 on the CPU: its kernels compute in float32 and round to bfloat16 on store.
    }

    const nn::GPTConfig& m = options.model;
    const nn::ModelSpec spec = nn::gpt_spec(m);  // checks the shape before anything is allocated
    info.parameters = spec.total_parameters();
    const int64_t embedding_parameters = (m.vocab + m.context) * m.channels;  // wte and wpe
    info.matmul_parameters = info.parameters - embedding_parameters;
    info.flops_per_token = gpt_flops_per_token(info.matmul_parameters, m.layers, m.channels, m.context);

    std::printf("bench_gpt: minipipe, GPT training steps on random tokens, one process\n");
    std::printf("model: %s%s, %lld parameters (N = %lld outside the embedding tables)\n", spec.description.c_str(),
                options.tiny ? " [--tiny]" : "", (long long)info.parameters, (long long)info.matmul_parameters);
    const std::string peak_text = std::isfinite(info.peak_flops)
                                      ? std::to_string(static_cast<int>(info.peak_flops / 1e12)) + " TFLOP/s"
                                      : "n/a";
    std::printf("device: %s, precision %s, peak %s (%s)\n", info.device_label.c_str(), name_of(info.precision),
                peak_text.c_str(), info.peak_label.c_str());
    std::printf("flops per token = 6*N + 6*L*C*T = %.4g (attention over the causal lower triangle)\n",
                info.flops_per_token);
    std::printf("optimizer: AdamW(lr %g, betas %g/%g, eps %g, weight decay %g), grad clip %g; %lld warm-up + "
                "%lld timed "
                "steps per batch; batches %s\n",
                kLearningRate, kBeta1, kBeta2, kEps, kWeightDecay, kGradClip, (long long)options.warmup_steps,
                (long long)options.timed_steps, join_ints(options.batches).c_str());
    std::fflush(stdout);

    std::vector<BatchResult> results;
    bool failed = false;
    for (int64_t batch : options.batches) {
        BatchResult result;
        try {
            result = run_batch(options, batch, device, info);
        } catch (const std::bad_alloc&) {  // the CPU allocator's out-of-memory
            result.batch = batch;
            result.error = "out of host memory";
        } catch (const std::exception& e) {  // CUDA out-of-memory and every other error carry their message
            result.batch = batch;
            result.error = e.what();
        }
        if (!result.error.empty()) {
            failed = true;
            std::fprintf(stderr, "bench_gpt: batch %lld failed: %s\n", (long long)batch, result.error.c_str());
        }
        allocator_for(device).empty_cache();  // the next batch size starts from an empty cache
        if (result.error.empty()) {
            char mfu[16] = "n/a";
            if (std::isfinite(result.mfu)) std::snprintf(mfu, sizeof mfu, "%.1f%%", 100.0 * result.mfu);
            std::printf("batch %lld: %.1f ms/step (median of %lld; min %.1f, max %.1f), %.0f tokens/s, MFU %s, peak "
                        "memory %s, loss %.4f -> %.4f\n",
                        (long long)batch, result.ms_median, (long long)options.timed_steps, result.ms_min,
                        result.ms_max,
                        result.tokens_per_second, mfu, bytes_str(static_cast<double>(result.peak_bytes), 2).c_str(),
                        result.loss_first, result.loss_last);
            if (!std::isfinite(result.loss_first) || !std::isfinite(result.loss_last)) {
                std::fprintf(stderr, "bench_gpt: batch %lld: the loss is not finite\n", (long long)batch);
                failed = true;
            }
        }
        std::fflush(stdout);
        results.push_back(result);
    }

    if (!options.json_path.empty() && !write_json(options.json_path, options, info, results)) {
        std::fprintf(stderr, "bench_gpt: could not write %s\n", options.json_path.c_str());
        return 1;
    }
    return failed ? 1 : 0;
}

int main(int argc, char** argv) {
    try {
        return run_benchmark(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "bench_gpt: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_gpt: %s\n", e.what());
        return 1;
    }
}
