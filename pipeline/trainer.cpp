// The trainer: device and precision, the stage × replica layout, data, partition, the engine
// loop with its logs and validation loss, checkpoints, the gathered trace and timeline, samples
// and the summary.
#include "pipeline/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>

#include <unistd.h>

#include "autograd/tape.h"
#include "nn/additions.h"
#include "nn/checkpoint.h"
#include "nn/data.h"
#include "nn/hf_gpt2.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "pipeline/engine.h"
#include "pipeline/gather.h"
#include "pipeline/partition.h"
#include "pipeline/render.h"
#include "pipeline/schedule.h"
#include "pipeline/timeline_svg.h"
#include "pipeline/validate.h"
#include "tensor/allocator.h"
#include "tensor/device_context.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/gemm.h"
#include "tensor/peak_flops.h"

namespace mp::pipeline {

namespace {

// Prints on world rank 0 only.
struct Log {
    bool on;
    template <typename... Args>
    void line(const char* format, Args... args) const {
        if (!on) return;
        std::printf(format, args...);
        std::printf("\n");
        std::fflush(stdout);
    }
};

std::string bytes_str(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int unit = 0;
    while (bytes >= 1024 && unit < 4) bytes /= 1024, ++unit;
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
    return buffer;
}

std::string fixed1(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.1f", value);
    return buffer;
}

std::string fixed4(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.4f", value);
    return buffer;
}

Device choose_device(const TrainConfig& config, int gpu) {
    if (config.device == "cpu") return Device::cpu();
    if (config.device == "cuda") {
        MP_REQUIRE(gpu >= 0, "device: \"cuda\" was asked for but this rank sees no GPU");
        return Device::cuda(gpu);
    }
    return gpu >= 0 ? Device::cuda(gpu) : Device::cpu();
}

// The training data: token sequences for gpt/realistic, a regression task for mlp.
struct DataSource {
    nn::TokenDataset tokens;      // gpt / realistic
    nn::TokenDataset validation;  // data.val_path; empty without one
    Tensor teacher;           // mlp: targets = inputs · teacher
    int64_t time = 0;         // tokens per sequence (0 for mlp)

    // The global batch of `step` (the same on every rank, whatever the step it resumed at).
    nn::Batch batch(const TrainConfig& config, int64_t step) const {
        Generator gen(static_cast<uint64_t>(config.seed) + 1);
        gen.advance(static_cast<uint64_t>(step) * static_cast<uint64_t>(config.train_batch_size) * 2);
        if (config.model.kind == "mlp") {
            int64_t width = config.model.widths.front();
            Tensor inputs = Tensor::randn({config.train_batch_size, width}, gen);
            return {inputs, ops::matmul(inputs, teacher)};
        }
        return nn::sample_batch(tokens, config.train_batch_size, time, gen, Device::cpu());
    }
};

DataSource make_data(const TrainConfig& config) {
    DataSource data;
    if (config.model.kind == "mlp") {
        Generator gen(static_cast<uint64_t>(config.seed) + 2);
        int64_t in = config.model.widths.front(), out = config.model.widths.back();
        data.teacher = Tensor::randn({in, out}, gen, 0.0, 1.0 / std::sqrt(static_cast<double>(in)));
        return data;
    }
    auto load = [&](const std::string& path) {
        return config.data.kind == "text" ? nn::load_text_file(path) : nn::load_token_shard(path, config.model.vocab);
    };
    if (config.data.kind == "text" || config.data.kind == "shard") data.tokens = load(config.data.path);
    else
        data.tokens =
            nn::synthetic_additions(20000, static_cast<int>(config.data.digits), static_cast<uint64_t>(config.seed));
    MP_REQUIRE(data.tokens.vocab <= config.model.vocab, "model.vocab is ", config.model.vocab, " but the data (",
               data.tokens.description, ") needs ", data.tokens.vocab);
    if (!config.data.vocab_path.empty())
        nn::use_vocabulary(data.tokens, nn::load_token_vocabulary(config.data.vocab_path));
    if (!config.data.val_path.empty()) {
        data.validation = load(config.data.val_path);
        MP_REQUIRE(data.validation.vocab <= config.model.vocab, "model.vocab is ", config.model.vocab,
                   " but the validation data (", data.validation.description, ") needs ", data.validation.vocab);
        // Every evaluation reads eval.batches whole global batches from the start of the file.
        const int64_t available = nn::eval_batches_available(data.validation, config.train_batch_size,
                                                             config.model.context);
        MP_REQUIRE(available >= config.eval.batches, "eval.batches is ", config.eval.batches, " but data.val_path '",
                   config.data.val_path, "' holds ", data.validation.tokens.size(), " tokens: ", available,
                   " batches of train_batch_size ", config.train_batch_size, " × model.context ", config.model.context,
                   " (", config.eval.batches, " need ",
                   config.eval.batches * config.train_batch_size * config.model.context + 1, " tokens); lower eval.batches or give more validation data");
    }
    // Checked here, before any model is built: a sequence and its next-token targets need context + 1 tokens.
    MP_REQUIRE(static_cast<int64_t>(data.tokens.tokens.size()) > config.model.context, "model.context is ",
               config.model.context, " but the data (", data.tokens.description, ") holds ", data.tokens.tokens.size(),
               " tokens; a sequence needs context + 1");
    data.time = config.model.context;
    return data;
}

// Cross-entropy over the model's vocabulary: a padded table's extra logits never reach the loss.
LossFunction make_loss(const TrainConfig& config) {
    return config.model.kind == "mlp" ? mse_loss() : cross_entropy_loss(-100, config.model.vocab);
}

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainConfig& config, const std::vector<Tensor>& parameters) {
    const TrainConfig::Optimizer& o = config.optimizer;
    if (o.type == "sgd") return std::make_unique<nn::SGD>(parameters, nn::SGDOptions{o.lr, o.momentum, o.weight_decay});
    return std::make_unique<nn::AdamW>(parameters, nn::AdamWOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay});
}

// What the learning-rate curve depends on, recorded with each checkpoint: a resume under another
// curve would silently change it (the total steps matter to cosine only).
std::string lr_curve(const TrainConfig& config) {
    const TrainConfig::LrSchedule& schedule = config.lr_schedule;
    std::string curve = str(schedule.kind, ", optimizer.lr ", config.optimizer.lr, ", warmup_steps ", schedule.warmup_steps);
    if (schedule.kind == "cosine") curve += str(", min_lr ", schedule.min_lr, ", steps ", config.steps);
    return curve;
}

double learning_rate(const TrainConfig& config, int64_t step) {
    if (config.lr_schedule.kind == "constant")
        return nn::constant_lr(step, config.lr_schedule.warmup_steps, config.optimizer.lr);
    return nn::cosine_lr(step, config.lr_schedule.warmup_steps, config.steps, config.optimizer.lr, config.lr_schedule.min_lr);
}

// Every rank must partition alike: with `time`, world rank 0 profiles and broadcasts the times.
std::vector<StageRange> decide_partition(const TrainConfig& config, const nn::ModelSpec& spec, const DataSource& data,
                                         comm::Communicator& world, Device device) {
    int stages = static_cast<int>(config.pipeline.stages * config.pipeline.virtual_stages);
    PartitionMethod method = parse_partition_method(config.pipeline.partition);
    std::vector<double> times;
    if (method == PartitionMethod::Time) {
        std::vector<float> measured(static_cast<size_t>(spec.size()), 0.0f);
        if (world.rank() == 0) {
            Tensor sample = data.batch(config, 0).ids.slice(0, config.micro_batch_size);
            std::vector<double> t = profile_layer_times(spec, sample, device);
            measured.assign(t.begin(), t.end());
        }
        Tensor shared = Tensor::from_vector(measured, {spec.size()}, world.device_index() >= 0 ? device : Device::cpu());
        world.broadcast(shared, 0);
        for (float t : shared.to_vector<float>()) times.push_back(t);
    }
    return partition(spec, stages, method, config.pipeline.balance, times);
}

std::string layer_names(const nn::ModelSpec& spec, const StageRange& range) {
    std::string first = spec.layers[range.begin].name, last = spec.layers[range.end - 1].name;
    return range.size() == 1 ? first : first + " .. " + last;
}

// Before building anything: a lower bound of what this stage will hold — its parameters with
// their gradients and optimizer state in fp32, the last stage's logits and their gradient for one
// micro-batch, one layer's attention scores — against the device's memory. A model that cannot
// fit is refused with its numbers instead of ending in a bare std::bad_alloc (or worse) later.
void refuse_if_it_cannot_fit(const TrainConfig& config, const nn::ModelSpec& spec, const std::vector<StageRange>& held,
                             bool last_stage, Device device) {
    double parameters = 0;
    for (const StageRange& range : held)
        for (int64_t i = range.begin; i < range.end; ++i) parameters += static_cast<double>(spec.layers[i].parameters);
    const bool adamw = config.optimizer.type == "adamw";
    const double copies = 2 + (adamw ? 2 : config.optimizer.momentum > 0 ? 1 : 0);  // weights, grads, state
    double bytes = parameters * 4.0 * copies;
    const TrainConfig::Model& m = config.model;
    const double rows = static_cast<double>(config.micro_batch_size);
    if (m.kind == "gpt") {
        if (last_stage) bytes += 2.0 * rows * m.context * m.vocab * 4.0;
        bytes += rows * m.heads * static_cast<double>(m.context) * m.context * 4.0;
    }
    const double available = static_cast<double>(device_memory_bytes(device));
    MP_REQUIRE(bytes <= available, "this stage needs at least ", bytes_str(bytes), " (", parameters,
               " parameters with gradients and ", adamw ? "AdamW" : "SGD", " state",
               m.kind == "gpt" ? str(", and for micro_batch_size ", config.micro_batch_size, " × context ", m.context,
                                     " × vocab ", m.vocab, " its logits and attention scores")
                               : std::string(),
               ") but ", device.str(), " has ", bytes_str(available), "; use a smaller model or batch, or more stages");
}

// Samples a continuation of a prompt with the whole model (world rank 0, CPU).
std::string sample_text(nn::Sequential& model, const nn::TokenDataset& data, int64_t window, uint64_t seed) {
    autograd::NoGradScope no_grad;
    model.eval();  // no dropout while sampling
    struct BackToTraining {
        nn::Sequential& model;
        ~BackToTraining() { model.train(); }
    } back_to_training{model};
    Generator gen(seed);
    nn::Batch prompt = nn::sample_batch(data, 1, std::min<int64_t>(8, window), gen, Device::cpu());
    std::vector<int32_t> context = prompt.ids.to_vector<int32_t>();
    std::string prompt_text = data.decode(context);
    std::vector<int32_t> generated;
    for (int i = 0; i < 24; ++i) {
        int64_t start = std::max<int64_t>(0, static_cast<int64_t>(context.size()) - window);
        std::vector<int32_t> input(context.begin() + start, context.end());
        Tensor logits = model.forward(Tensor::from_vector(input, {1, static_cast<int64_t>(input.size())}));
        int64_t vocab = logits.size(-1);
        // Under mixed precision the logits are bfloat16: read them as float32 (exact).
        std::vector<float> all = logits.dtype() == DType::Float32 ? logits.to_vector<float>()
                                                                   : ops::cast(logits, DType::Float32).to_vector<float>();
        const float* last = all.data() + (input.size() - 1) * vocab;
        // Greedy over the data's vocabulary (the model's may be larger).
        int32_t next = 0;
        for (int32_t v = 1; v < data.vocab; ++v)
            if (last[v] > last[next]) next = v;
        context.push_back(next);
        generated.push_back(next);
    }
    auto printable = [](std::string s) {
        for (char& c : s)
            if (c == '\n') c = '|';
        return s;
    };
    return "[" + printable(prompt_text) + "] -> [" + printable(data.decode(generated)) + "]";
}

// Model flops per second at 100% of the GPUs' datasheet peak, for the step log's MFU: a GPT's
// flops per token (tensor/peak_flops.h) over the peak of every distinct GPU the ranks use (ranks
// sharing one GPU, as `make demo` does on a one-GPU machine, count it once). 0 when unknown: the
// CPU, a GPU not in the peak table, or a model other than a GPT (no flops formula).
struct MfuBasis {
    double flops_per_token = 0;
    double peak_flops = 0;  // all the distinct GPUs together
    bool known() const { return flops_per_token > 0 && peak_flops > 0; }
};

MfuBasis mfu_basis(const TrainConfig& config, const nn::ModelSpec& spec, comm::Communicator& world, Device device) {
    MfuBasis basis;
    // Collective (every rank calls it alike): which GPU of which host each rank uses.
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    const double key = device.is_cuda()
                           ? static_cast<double>(std::hash<std::string>{}(host) % (1u << 24)) * 64 + device.index
                           : -1;
    const std::vector<double> keys =
        all_gather_values(world, key, world.device_index() >= 0 ? device : Device::cpu());
    if (!device.is_cuda() || config.model.kind != "gpt") return basis;
    const PeakEntry* peak = find_peak(device_name(device));
    if (peak == nullptr) return basis;
    const std::set<double> gpus(keys.begin(), keys.end());
    const nn::GPTConfig gpt = gpt_config(config);
    const int64_t embedding_parameters = (gpt.padded_vocab + gpt.context) * gpt.channels;  // wte and wpe
    basis.flops_per_token = gpt_flops_per_token(spec.total_parameters() - embedding_parameters, gpt.layers,
                                                gpt.channels, gpt.context);
    basis.peak_flops = peak->for_precision(config.precision) * static_cast<double>(gpus.size());
    return basis;
}

}  // namespace

void check_output_paths(const TrainConfig& config) {
    namespace fs = std::filesystem;
    // The nearest existing directory at or above `dir` must be writable (missing levels are created).
    auto require_writable_directory = [](const std::string& key, const std::string& path, fs::path dir) {
        if (dir.empty()) dir = ".";
        while (!fs::exists(dir) && dir.has_parent_path() && dir.parent_path() != dir) dir = dir.parent_path();
        MP_REQUIRE(fs::is_directory(dir) && ::access(dir.c_str(), W_OK) == 0, key, " '", path, "': cannot write there (",
                   dir.string(), fs::exists(dir) ? (fs::is_directory(dir) ? " is not writable" : " is not a directory")
                                                 : " does not exist", ")");
    };
    const std::pair<const char*, const std::string*> files[] = {
        {"trace.path", &config.trace.path}, {"trace.svg", &config.trace.svg}, {"summary.path", &config.summary.path}};
    for (const auto& [key, path] : files) {
        if (path->empty()) continue;
        MP_REQUIRE(!fs::is_directory(*path), key, " '", *path, "' is a directory, not a file");
        fs::path parent = fs::path(*path).parent_path();
        MP_REQUIRE(parent.empty() || fs::is_directory(parent), key, " '", *path, "': the directory '", parent.string(),
                   "' does not exist");
        require_writable_directory(key, *path, parent);
    }
    if (!config.exports.hf.empty()) {
        MP_REQUIRE(!fs::exists(config.exports.hf) || fs::is_directory(config.exports.hf), "export.hf '",
                   config.exports.hf, "' is not a directory");
        require_writable_directory("export.hf", config.exports.hf, config.exports.hf);
    }
    if (!config.checkpoint.dir.empty() && (config.checkpoint.every > 0 || config.checkpoint.resume)) {
        MP_REQUIRE(!fs::exists(config.checkpoint.dir) || fs::is_directory(config.checkpoint.dir), "checkpoint.dir '",
                   config.checkpoint.dir, "' is not a directory");
        require_writable_directory("checkpoint.dir", config.checkpoint.dir, config.checkpoint.dir);
    }
}

nn::ModelSpec model_spec(const TrainConfig& config) {
    const TrainConfig::Model& m = config.model;
    uint64_t seed = static_cast<uint64_t>(config.seed);
    if (m.kind == "mlp") return nn::mlp_spec(m.widths, seed);
    if (m.kind == "realistic") return nn::realistic_spec(m.vocab, m.hidden, m.blocks, seed);
    return nn::gpt_spec(gpt_config(config));
}

nn::GPTConfig gpt_config(const TrainConfig& config) {
    const TrainConfig::Model& m = config.model;
    nn::GPTConfig gpt;
    gpt.vocab = m.vocab;
    gpt.context = m.context;
    gpt.layers = m.layers;
    gpt.heads = m.heads;
    gpt.channels = m.channels;
    gpt.dropout = m.dropout;
    gpt.layer_norm_eps = m.layer_norm_eps;
    gpt.tie_embeddings = m.tie_embeddings;
    const int64_t multiple = m.pad_vocab_to_multiple_of > 0 ? m.pad_vocab_to_multiple_of : 1;
    gpt.padded_vocab = (m.vocab + multiple - 1) / multiple * multiple;
    gpt.seed = static_cast<uint64_t>(config.seed);
    return gpt;
}

TrainResult train(const TrainConfig& config, comm::Communicator& world, int gpu, bool verbose) {
    const Log log{world.rank() == 0 && verbose};
    const Log final_log{world.rank() == 0};
    const Device device = choose_device(config, gpu);
    set_matmul_precision(config.precision == "tf32" ? MatmulPrecision::TF32 : MatmulPrecision::Exact);
    // Mixed precision: float32 masters (optimizer, checkpoints, gradient reduction), bfloat16
    // compute copies, activations and stage transfers, for the whole run on this thread.
    nn::ComputeDTypeScope compute_dtype(config.precision == "bf16" ? std::optional<DType>(DType::BFloat16)
                                                                   : std::nullopt);
    const int K = static_cast<int>(config.pipeline.stages);
    const int replicas = data_parallel_size(config, world.size());
    const int pipeline_rank = world.rank() % K, replica = world.rank() / K;
    std::unique_ptr<comm::Communicator> pipeline = world.split(replica, pipeline_rank);
    std::unique_ptr<comm::Communicator> replica_group = replicas > 1 ? world.split(pipeline_rank, replica) : nullptr;

    const nn::ModelSpec spec = model_spec(config);
    const DataSource data = make_data(config);
    const int v = static_cast<int>(config.pipeline.virtual_stages);
    const Schedule schedule = make_schedule(config.pipeline.schedule, K, static_cast<int>(config.micro_batches), v);
    ValidationResult valid = validate(schedule);
    MP_REQUIRE(valid.ok, "schedule ", config.pipeline.schedule, " is invalid: ", valid.error);
    const std::vector<StageRange> ranges = decide_partition(config, spec, data, world, device);  // one per stage
    const std::vector<int> held_stages = schedule.stages_of(pipeline_rank);  // the stages this rank runs
    std::vector<StageRange> held_ranges;
    for (int s : held_stages) held_ranges.push_back(ranges[static_cast<size_t>(s)]);
    refuse_if_it_cannot_fit(config, spec, held_ranges, schedule.rank_of(schedule.stages - 1) == pipeline_rank, device);
    std::vector<std::shared_ptr<nn::Sequential>> modules;
    std::optional<nn::HfGpt2Config> hf;
    if (!config.model.init_from.empty()) hf = nn::read_hf_gpt2_config(config.model.init_from);
    for (const StageRange& range : held_ranges) {
        modules.push_back(spec.build(range.begin, range.end));
        if (hf) nn::load_hf_gpt2(*hf, *modules.back());  // this stage's tensors only
        modules.back()->to(device);
    }
    nn::tie_across(spec, modules);  // a rank holding the first and the last stage: one embedding
    const std::vector<Tensor> parameters = nn::unique_parameters(modules);
    // What this rank's checkpoint holds: its one stage, or all the layers of its several stages.
    std::shared_ptr<nn::Sequential> module = modules.front();
    if (modules.size() > 1) {
        module = std::make_shared<nn::Sequential>();
        for (const std::shared_ptr<nn::Sequential>& stage : modules) module->add_layers_of(*stage);
    }
    // Which stage runs on which rank: a checkpoint is resumed only under the same placement.
    std::string placement_text;
    for (int rank : schedule.placement) placement_text += (placement_text.empty() ? "" : ",") + std::to_string(rank);
    std::unique_ptr<nn::Optimizer> optimizer = make_optimizer(config, parameters);
    Engine engine(*pipeline, modules, schedule, *optimizer, make_loss(config),
                  parse_rematerialization(config.pipeline.rematerialization), device, replica_group.get());
    engine.set_grad_clip(config.grad_clip);
    engine.tie_parameters(spec.ties);  // collective: the embedding group of the first and last stages
    const MfuBasis mfu = mfu_basis(config, spec, world, device);  // collective

    log.line("minipipe: %s, %lld parameters", spec.description.c_str(), (long long)spec.total_parameters());
    if (hf) log.line("init_from: %s (config %s)", hf->weights_path.c_str(), hf->config_path.c_str());
    const std::string stages_text = v == 1 ? str(K, " stages") : str(K, " pipeline ranks (", v, " stages each)");
    log.line("layout: %d ranks = %s x %d data-parallel replicas, %s schedule, %lld micro-batches of %lld, "
             "re-materialization %s, device %s, %s",
             world.size(), stages_text.c_str(), replicas, config.pipeline.schedule.c_str(), (long long)config.micro_batches,
             (long long)config.micro_batch_size, config.pipeline.rematerialization.c_str(), device.str().c_str(),
             config.precision.c_str());
    if (config.model.kind != "mlp") log.line("data: %s", data.tokens.description.c_str());
    if (!config.data.val_path.empty())
        log.line("validation: %s; %lld batches %s", data.validation.description.c_str(), (long long)config.eval.batches,
                 config.eval.every > 0 ? str("before steps 0, ", config.eval.every, ", ", 2 * config.eval.every,
                                                             ", ... and after the last").c_str()
                                       : "at the end");
    const int64_t shard = config.train_batch_size / replicas;
    std::vector<double> stash_estimates;
    {
        // The per-stage report's activation estimate: one micro-batch's stash, measured the way
        // every step measures it (a collective: the stages agree on activation shapes first).
        nn::Batch sample = data.batch(config, 0);
        size_t estimate = engine.estimate_stash_bytes(sample.ids.slice(replica * shard, (replica + 1) * shard),
                                                      sample.targets.slice(replica * shard, (replica + 1) * shard));
        stash_estimates = all_gather_values(*pipeline, static_cast<double>(estimate), device);
    }
    log.line("partition (%s):", config.pipeline.partition.c_str());
    for (int s = 0; s < schedule.stages; ++s) {
        int64_t params = 0;
        for (int64_t i = ranges[s].begin; i < ranges[s].end; ++i) params += spec.layers[i].parameters;
        const int rank = schedule.rank_of(s);
        const std::string on_rank = v == 1 ? std::string() : str(" (rank ", rank, ")");
        const std::string activations =
            v == 1 ? str(", activations ", bytes_str(stash_estimates[rank]), " per micro-batch") : std::string();
        log.line("  stage %d%s: layers %lld-%lld (%s), %lld parameters%s", s, on_rank.c_str(), (long long)ranges[s].begin,
                 (long long)ranges[s].end - 1, layer_names(spec, ranges[s]).c_str(), (long long)params,
                 activations.c_str());
    }
    if (v > 1)
        for (int rank = 0; rank < K; ++rank)
            log.line("  rank %d: activations %s per micro-batch (all its stages)", rank,
                     bytes_str(stash_estimates[rank]).c_str());
    if (schedule.stages * static_cast<int>(config.micro_batches) <= 8 * 16)
        log.line("schedule:\n%s", render(schedule).c_str());

    int64_t start_step = 0;
    const std::string& checkpoint_dir = config.checkpoint.dir;
    if (config.checkpoint.resume) {
        // A resume that finds nothing is an error (a typo in the directory must not silently
        // start afresh and then write there), as is one with nothing left to train.
        const std::string index = nn::checkpoint_index_path(checkpoint_dir);
        MP_REQUIRE(std::filesystem::exists(index), "checkpoint.resume is true but '", checkpoint_dir,
                   "' holds no checkpoint (no ", index, "); check checkpoint.dir, or set checkpoint.resume=false to "
                   "start afresh");
        nn::SafetensorsMetadata saved_run;
        start_step = nn::load_stage_checkpoint(
            checkpoint_dir, pipeline_rank, K, *module, *optimizer, &saved_run,
            {{"stage_placement", placement_text,
              str("the ranks of stages 0, 1, ... (this run: schedule ", config.pipeline.schedule,
                  ", pipeline.virtual_stages ", v, "); resume with the schedule and virtual_stages it was saved with")}});
        MP_REQUIRE(saved_run["lr_curve"] == lr_curve(config), "the checkpoint in '", checkpoint_dir,
                   "' was trained with the learning-rate curve (", saved_run["lr_curve"], ") but this run's is (",
                   lr_curve(config), "): resuming would change the curve; keep the schedule's settings as they were");
        MP_REQUIRE(start_step < config.steps, "the checkpoint in '", checkpoint_dir, "' is at step ", start_step,
                   ", which already reaches steps = ", config.steps, ": nothing to train (raise steps to continue)");
        engine.set_steps_run(start_step);
        world.barrier();  // every rank has loaded (a rank that failed has ended the job) before saying so
        log.line("resumed from %s at step %lld", checkpoint_dir.c_str(), (long long)start_step);
    }
    std::vector<nn::LayerRange> layer_ranges;
    for (const StageRange& r : ranges) layer_ranges.emplace_back(r.begin, r.end);
    auto save_checkpoint = [&](int64_t step) {
        if (replica != 0) return;  // replicas hold identical parameters
        std::filesystem::create_directories(checkpoint_dir);
        // The index's layer ranges are one per file: with several stages per rank they are in the
        // placement and the partition, which a resume reproduces.
        const std::vector<nn::LayerRange> file_ranges = v == 1 ? layer_ranges : std::vector<nn::LayerRange>{};
        const auto begin = std::chrono::steady_clock::now();
        nn::save_stage_checkpoint(checkpoint_dir, pipeline_rank, K, *module, *optimizer, step, file_ranges,
                                  {{"lr_curve", lr_curve(config)}, {"stage_placement", placement_text}});
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
        const std::string file = nn::stage_checkpoint_path(checkpoint_dir, pipeline_rank, K, step);
        const double bytes = static_cast<double>(std::filesystem::file_size(file));
        pipeline->barrier();  // every stage's file is in place before the step is published
        if (pipeline_rank == 0 && K > 1) nn::write_checkpoint_index(checkpoint_dir, K, step, file_ranges);
        pipeline->barrier();
        // How long each stage's file took: a line per file once a save is slow enough to wait for.
        const std::vector<double> all_bytes = all_gather_values(*pipeline, bytes, device);
        const std::vector<double> all_seconds = all_gather_values(*pipeline, seconds, device);
        double total_bytes = 0, slowest = 0;
        for (int r = 0; r < K; ++r) total_bytes += all_bytes[r], slowest = std::max(slowest, all_seconds[r]);
        log.line("checkpoint: step %lld saved to %s (%d files, %s in %.2f s)", (long long)step, checkpoint_dir.c_str(),
                 K, bytes_str(total_bytes).c_str(), slowest);
        if (slowest >= 1.0)
            for (int r = 0; r < K; ++r)
                log.line("  %s: %s in %.2f s (%s/s)",
                         std::filesystem::path(nn::stage_checkpoint_path(checkpoint_dir, r, K, step))
                             .filename()
                             .c_str(),
                         bytes_str(all_bytes[r]).c_str(), all_seconds[r],
                         bytes_str(all_bytes[r] / std::max(all_seconds[r], 1e-9)).c_str());
    };

    const double tokens_per_step = static_cast<double>(config.train_batch_size) * std::max<int64_t>(1, data.time);
    TrainResult result;
    // The validation loss after `trained` steps: the mean over eval.batches fixed global batches
    // (each of train_batch_size rows, sharded over the replicas as a training batch is).
    const bool has_validation = !config.data.val_path.empty();
    auto evaluate = [&](int64_t trained) {
        const auto begin = std::chrono::steady_clock::now();
        double loss_sum = 0;
        for (int64_t b = 0; b < config.eval.batches; ++b) {
            const nn::Batch batch =
                nn::eval_batch(data.validation, b, config.train_batch_size, data.time, Device::cpu());
            try {
                loss_sum += engine.evaluate(batch.ids.slice(replica * shard, (replica + 1) * shard),
                                            batch.targets.slice(replica * shard, (replica + 1) * shard));
            } catch (const std::exception& e) {
                throw std::runtime_error(str("evaluation after step ", trained, ": ", e.what()));
            }
        }
        const double loss = loss_sum / static_cast<double>(config.eval.batches);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
        result.summary.val_losses.emplace_back(trained, loss);
        log.line("val   %5lld | val loss %.4f | %lld batches of %lld x %lld tokens | %7.1f ms", (long long)trained,
                 loss, (long long)config.eval.batches, (long long)config.train_batch_size, (long long)data.time,
                 1000 * seconds);
    };
    // Held-out exact match (eval.accuracy): the stages gathered into one model on world rank 0, which
    // greedily answers the held-out sums (the same list every time, on every schedule). A collective:
    // every rank calls it at the same steps. It reads copies of the parameters and touches no
    // generator the training draws from, so training is the same with it or without (the smoke test
    // compares the checksums). Returns rank 0's answers (empty elsewhere).
    const int digits = static_cast<int>(config.data.digits);
    const std::vector<nn::AdditionProblem> held_out =
        config.eval.accuracy > 0
            ? nn::held_out_additions(config.eval.accuracy, digits, static_cast<uint64_t>(config.seed))
            : std::vector<nn::AdditionProblem>{};
    auto score_held_out = [&](int64_t trained) {
        const auto begin = std::chrono::steady_clock::now();
        std::shared_ptr<nn::Sequential> whole_now;
        if (replica == 0) whole_now = gather_model(*pipeline, spec, ranges, schedule.placement, modules);
        std::vector<std::string> answers;
        std::vector<int32_t> counts(2, 0);
        if (world.rank() == 0) {
            answers = nn::answer_additions(*whole_now, data.tokens, held_out, config.model.context);
            const nn::ExactMatch match = nn::score_additions(held_out, answers);
            counts = {static_cast<int32_t>(match.correct), static_cast<int32_t>(match.total)};
        }
        Tensor shared = Tensor::from_vector(counts, {2}, world.device_index() >= 0 ? device : Device::cpu());
        world.broadcast(shared, 0);  // every rank's summary holds the same figures
        counts = shared.to_vector<int32_t>();
        const HeldOutAccuracy accuracy{trained, counts[0], counts[1]};
        result.summary.accuracies.push_back(accuracy);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
        log.line("        held-out sums: %lld of %lld exact (%.1f%%) | %7.1f ms", (long long)accuracy.correct,
                 (long long)accuracy.total, 100 * accuracy.accuracy(), 1000 * seconds);
        return answers;
    };
    std::vector<std::string> held_out_answers;
    StepResult last;
    double timed_seconds = 0;
    int64_t timed_steps = 0;
    for (int64_t step = start_step; step < config.steps; ++step) {
        if (has_validation && config.eval.every > 0 && step % config.eval.every == 0) evaluate(step);
        optimizer->set_lr(learning_rate(config, step));
        nn::Batch batch = data.batch(config, step);
        Tensor inputs = batch.ids.slice(replica * shard, (replica + 1) * shard);
        Tensor targets = batch.targets.slice(replica * shard, (replica + 1) * shard);
        auto begin = std::chrono::steady_clock::now();
        try {
            last = engine.step(inputs, targets);
        } catch (const std::exception& e) {
            throw std::runtime_error(str("step ", step, ": ", e.what()));  // which step, for every failure
        }
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
        if (step > start_step || config.steps - start_step == 1) timed_seconds += seconds, ++timed_steps;  // step 0 includes warm-up
        result.losses.push_back(last.loss);
        bool log_now = (config.log.every > 0 && step % config.log.every == 0) || step + 1 == config.steps;
        if (log_now) {
            std::vector<double> bubbles = all_gather_values(*pipeline, last.trace.bubble_fraction(), device);
            std::string bubble_text;
            for (double b : bubbles) bubble_text += (bubble_text.empty() ? "" : " ") + std::to_string(static_cast<int>(std::lround(100 * b)));
            // MFU on GPUs only (a GPT on a GPU of the peak table); the CPU has no peak to divide by.
            const double mfu_fraction = mfu.flops_per_token * tokens_per_step / seconds / mfu.peak_flops;
            const std::string mfu_text = mfu.known() ? str(" | MFU ", fixed1(100 * mfu_fraction), "%") : std::string();
            log.line("step %5lld | loss %.4f | lr %.2e | norm %6.3f | %8.0f tokens/s | %7.1f ms%s | "
                     "bubble %% by %s: %s",
                     (long long)step, last.loss, optimizer->lr(), last.grad_norm, tokens_per_step / seconds,
                     1000 * seconds, mfu_text.c_str(), v == 1 ? "stage" : "rank", bubble_text.c_str());
            if (config.log.memory) {
                std::vector<double> stash = all_gather_values(*pipeline, static_cast<double>(last.memory.peak_stash_bytes), device);
                std::vector<double> peak = all_gather_values(*pipeline, static_cast<double>(last.memory.peak_allocator_bytes), device);
                std::vector<double> per_mb = all_gather_values(*pipeline, static_cast<double>(last.memory.stash_bytes_per_micro_batch), device);
                for (int s = 0; s < K; ++s)
                    log.line("        %s %d: stash %s per micro-batch, peak stash %s, peak allocator %s",
                             v == 1 ? "stage" : "rank", s,
                             bytes_str(per_mb[s]).c_str(), bytes_str(stash[s]).c_str(), bytes_str(peak[s]).c_str());
            }
        }
        if (log_now && !held_out.empty()) held_out_answers = score_held_out(step + 1);
        if (!checkpoint_dir.empty() && config.checkpoint.every > 0 && (step + 1) % config.checkpoint.every == 0 &&
            step + 1 < config.steps)
            save_checkpoint(step + 1);
    }
    if (!checkpoint_dir.empty() && config.steps > start_step) save_checkpoint(config.steps);
    if (has_validation) evaluate(config.steps);  // the final validation loss, always

    // The summary: every stage's bubble and memory on every rank, the checksum from rank 0.
    RunSummary& summary = result.summary;
    summary.steps = config.steps;
    summary.final_loss = last.loss;
    double seconds_per_step = timed_steps > 0 ? timed_seconds / timed_steps : 0;
    summary.tokens_per_second = seconds_per_step > 0 ? tokens_per_step / seconds_per_step : 0;
    summary.samples_per_second = seconds_per_step > 0 ? config.train_batch_size / seconds_per_step : 0;
    summary.bubble_per_stage = all_gather_values(*pipeline, last.trace.bubble_fraction(), device);
    for (double v : all_gather_values(*pipeline, static_cast<double>(last.memory.peak_allocator_bytes), device))
        summary.peak_memory_per_stage.push_back(static_cast<size_t>(v));
    for (double v : all_gather_values(*pipeline, static_cast<double>(last.memory.peak_stash_bytes), device))
        summary.peak_stash_per_stage.push_back(static_cast<size_t>(v));
    summary.config = to_json(config);

    std::shared_ptr<nn::Sequential> whole;
    if (replica == 0) {
        std::vector<StageTrace> traces = gather_traces(*pipeline, last.trace);
        whole = gather_model(*pipeline, spec, ranges, schedule.placement, modules);
        if (world.rank() == 0) {
            result.last_traces = traces;
            if (!config.trace.path.empty()) {
                write_chrome_trace(traces, config.trace.path);
                log.line("trace: %s (open in https://ui.perfetto.dev)", config.trace.path.c_str());
            }
            if (!config.trace.svg.empty()) {
                write_timeline_svg(traces, str(config.pipeline.schedule, ", ", K, v == 1 ? " stages, " : str(" ranks x ", v, " stages, "),
                                               config.micro_batches, " micro-batches: the last step as measured"),
                                   config.trace.svg);
                log.line("timeline: %s", config.trace.svg.c_str());
            }
            summary.parameter_checksum = parameter_checksum(whole->named_parameters());
            if (!checkpoint_dir.empty()) {
                std::string path = checkpoint_dir + "/model.safetensors";
                nn::export_model(path, whole->named_parameters());
                log.line("export: the whole model as %s", path.c_str());
            }
            if (!config.exports.hf.empty()) {
                nn::export_hf_gpt2(config.exports.hf, whole->named_parameters(), gpt_config(config));
                log.line("export.hf: %s (model.safetensors + config.json for transformers)", config.exports.hf.c_str());
            }
        }
    }
    // Every rank gets the checksum (a fixed-length hex string) from world rank 0.
    std::vector<int32_t> checksum_chars(64, 0);
    for (size_t i = 0; i < std::min<size_t>(64, summary.parameter_checksum.size()); ++i)
        checksum_chars[i] = summary.parameter_checksum[i];
    Tensor shared = Tensor::from_vector(checksum_chars, {64}, world.device_index() >= 0 ? device : Device::cpu());
    world.broadcast(shared, 0);
    std::vector<int32_t> received = shared.to_vector<int32_t>();
    summary.parameter_checksum.clear();
    for (int32_t c : received)
        if (c != 0) summary.parameter_checksum += static_cast<char>(c);

    std::string bubbles;
    for (double b : summary.bubble_per_stage) bubbles += (bubbles.empty() ? "" : " ") + std::to_string(std::lround(100 * b));
    const std::string val_text =
        summary.val_losses.empty() ? std::string() : str(" | val loss ", fixed4(summary.val_losses.back().second));
    const std::string accuracy_text =
        summary.accuracies.empty() ? std::string()
                                   : str(" | held-out exact ", fixed1(100 * summary.accuracies.back().accuracy()), "%");
    final_log.line("final loss %.4f%s%s after %lld steps | %.0f tokens/s | %.1f samples/s | bubble %% by %s: %s | "
                   "checksum %s",
                   summary.final_loss, val_text.c_str(), accuracy_text.c_str(), (long long)config.steps,
                   summary.tokens_per_second,
                   summary.samples_per_second, v == 1 ? "stage" : "rank", bubbles.c_str(),
                   summary.parameter_checksum.substr(0, 16).c_str());
    if (world.rank() == 0 && !held_out_answers.empty()) {
        // The additions: problems never trained on, the model's answer, and the right one.
        const HeldOutAccuracy& final_accuracy = summary.accuracies.back();
        log.line("held-out sums after %lld steps: %lld of %lld exact (%.1f%%); the first few:", (long long)config.steps,
                 (long long)final_accuracy.correct, (long long)final_accuracy.total, 100 * final_accuracy.accuracy());
        for (size_t i = 0; i < std::min<size_t>(8, held_out.size()); ++i)
            log.line("%s", nn::answer_line(held_out[i], held_out_answers[i]).c_str());
    } else if (world.rank() == 0 && whole && config.model.kind == "gpt")
        for (int i = 0; i < 3; ++i)
            log.line("sample %d: %s", i, sample_text(*whole, data.tokens, config.model.context,
                                                     static_cast<uint64_t>(config.seed) + 100 + i).c_str());
    if (!config.summary.path.empty() && world.rank() == 0) {
        write_summary(summary, config.summary.path);
        log.line("summary: %s", config.summary.path.c_str());
    }
    return result;
}

}  // namespace mp::pipeline
