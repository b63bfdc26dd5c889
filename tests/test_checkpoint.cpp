// Checkpoints: the safetensors round trip and byte layout (against a hand-built file), every
// malformed-file refusal, atomic writes under a simulated crash, bit-identical resume of a small
// GPT split into two stages (and of SGD with momentum), and the mismatch errors of a resume.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/checkpoint.h"
#include "nn/models.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::random_ids;
using mp::testing::random_tensor;

namespace {

namespace fs = std::filesystem;

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string little_endian_u64(uint64_t value) {
    std::string bytes;
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
    return bytes;
}

// A safetensors file from a header text and a data section, written by hand.
std::string hand_built_file(const std::string& header, const std::string& data) {
    return little_endian_u64(header.size()) + header + data;
}

// Runs `fn` and expects mp::RuntimeError whose message contains every fragment.
void expect_runtime_error(const std::function<void()>& fn, const std::vector<std::string>& fragments) {
    try {
        fn();
        ADD_FAILURE() << "expected mp::RuntimeError, nothing was thrown";
    } catch (const RuntimeError& e) {
        std::string message = e.what();
        for (const std::string& fragment : fragments)
            EXPECT_NE(message.find(fragment), std::string::npos) << "message '" << message << "' lacks '" << fragment << "'";
    }
}

// The tensors of the round trip and of the Python check: every dtype, rank 0 to 3, an empty one.
nn::NamedTensors fixture_tensors() {
    return {{"arange_f32", Tensor::arange(6).reshape({2, 3})},
            {"scalar_f64", Tensor::from_vector<double>({2.5}, {})},
            {"ids_i32", Tensor::from_vector<int32_t>({3, -1, 7}, {3})},
            {"empty_f32", Tensor::zeros({0, 4})},
            {"random.cube", random_tensor({2, 3, 5}, 11)},
            {"random.f64", random_tensor({7}, 12, 1.0, DType::Float64)}};
}

}  // namespace

// ---------------------------------------------------------------- safetensors format

TEST(Safetensors, RoundTripKeepsDtypesShapesAndBits) {
    const std::string path = mp::testing::fresh_temp_dir("checkpoint_round_trip") + "/t.safetensors";
    nn::NamedTensors tensors = fixture_tensors();
    nn::write_safetensors(path, tensors, {{"note", "round trip"}, {"step", "7"}});
    nn::SafetensorsContents read = nn::read_safetensors(path);
    ASSERT_EQ(read.tensors.size(), tensors.size());
    for (const auto& [name, tensor] : tensors) {
        ASSERT_TRUE(read.tensors.count(name)) << name;
        const Tensor& back = read.tensors.at(name);
        EXPECT_EQ(back.dtype(), tensor.dtype()) << name;
        EXPECT_EQ(back.shape(), tensor.shape()) << name;
        expect_equal(back, tensor, name);
    }
    EXPECT_EQ(read.metadata, (nn::SafetensorsMetadata{{"note", "round trip"}, {"step", "7"}}));
}

TEST(Safetensors, ByteLayoutMatchesAHandBuiltFile) {
    // Keys sorted ("__metadata__" < "a" < "b"), fields sorted, offsets relative to the data
    // section, header padded with spaces to a multiple of 8, then the raw little-endian data.
    std::string header =
        R"({"__metadata__":{"k":"v"},"a":{"data_offsets":[0,4],"dtype":"I32","shape":[]},)"
        R"("b":{"data_offsets":[4,12],"dtype":"F32","shape":[2]}})";
    header.append((8 - header.size() % 8) % 8, ' ');
    const std::string data = std::string("\x07\x00\x00\x00", 4)     // int32 7
                             + std::string("\x00\x00\x80\x3f", 4)   // float 1.0f = 0x3f800000
                             + std::string("\x00\x00\x00\xc0", 4);  // float -2.0f = 0xc0000000
    const std::string expected = hand_built_file(header, data);

    nn::NamedTensors tensors = {{"b", Tensor::from_vector<float>({1.0f, -2.0f}, {2})},
                                {"a", Tensor::from_vector<int32_t>({7}, {})}};
    std::string encoded = nn::encode_safetensors(tensors, {{"k", "v"}});
    EXPECT_EQ(encoded, expected);
    EXPECT_EQ(header.size() % 8, 0u);
    EXPECT_EQ(encoded.substr(0, 8), little_endian_u64(header.size()));

    nn::SafetensorsContents decoded = nn::decode_safetensors(expected, "hand-built");
    EXPECT_EQ(decoded.tensors.at("a").to_vector<int32_t>(), std::vector<int32_t>({7}));
    EXPECT_EQ(decoded.tensors.at("b").to_vector<float>(), std::vector<float>({1.0f, -2.0f}));
    EXPECT_EQ(decoded.metadata.at("k"), "v");
}

TEST(Safetensors, WriteRefusesBadNames) {
    Tensor t = Tensor::zeros({2});
    expect_invalid_argument([&] { nn::encode_safetensors({{"x", t}, {"x", t}}); }, {"'x'", "twice"});
    expect_invalid_argument([&] { nn::encode_safetensors({{"", t}}); }, {"empty name"});
    expect_invalid_argument([&] { nn::encode_safetensors({{"__metadata__", t}}); }, {"reserved"});
}

TEST(Safetensors, MalformedFilesAreRefusedNamingFileAndProblem) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_malformed");
    const std::string good = nn::encode_safetensors(fixture_tensors());
    auto expect_refused = [&](const std::string& name, const std::string& bytes, const std::vector<std::string>& problem) {
        const std::string path = dir + "/" + name + ".safetensors";
        write_bytes(path, bytes);
        std::vector<std::string> fragments = problem;
        fragments.push_back(path);
        SCOPED_TRACE(name);
        expect_invalid_argument([&] { nn::read_safetensors(path); }, fragments);
    };
    // Truncated: in the data, in the header, and before the header length ends.
    expect_refused("truncated_data", good.substr(0, good.size() - 3), {"beyond the data section", "truncated"});
    expect_refused("truncated_header", good.substr(0, 20), {"header length", "exceeds", "truncated"});
    expect_refused("truncated_length", good.substr(0, 5), {"truncated", "5 bytes"});
    // A corrupt header length: too large for the file, or pointing into the middle of the JSON.
    expect_refused("huge_length", little_endian_u64(uint64_t(1) << 40) + good.substr(8), {"header length", "exceeds"});
    std::string short_length = good;
    short_length.replace(0, 8, little_endian_u64(10));
    expect_refused("short_length", short_length, {"not valid JSON"});
    // Bad JSON, and valid JSON of the wrong shape.
    expect_refused("bad_json", hand_built_file(R"({"a": {"dtype": )", ""), {"not valid JSON"});
    expect_refused("not_object", hand_built_file("[1,2]   ", ""), {"does not start with '{'"});
    expect_refused("duplicate_key",
                   hand_built_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                   R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                   std::string(4, '\0')),
                   {"'a' twice"});
    // Offsets: overlapping, with a gap, beyond the data, trailing bytes, wrong byte count.
    expect_refused("overlap",
                   hand_built_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   std::string(12, '\0')),
                   {"tensor 'b'", "overlap tensor 'a'"});
    expect_refused("gap", hand_built_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')),
                   {"gap", "'a' begins at 4"});
    expect_refused("trailing",
                   hand_built_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(9, '\0')),
                   {"9 bytes", "trailing"});
    expect_refused("byte_count",
                   hand_built_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
                   {"tensor 'a'", "hold 8 bytes", "needs 12"});
    expect_refused("reversed",
                   hand_built_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", std::string(4, '\0')),
                   {"end before they begin"});
    // Fields: an unknown dtype, a negative extent, a missing field, a non-string metadata value.
    expect_refused("unknown_dtype",
                   hand_built_file(R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')),
                   {"tensor 'a'", "unknown dtype 'Q8'"});
    expect_refused("negative_extent",
                   hand_built_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')),
                   {"tensor 'a'", "not a non-negative integer"});
    expect_refused("missing_field", hand_built_file(R"({"a":{"dtype":"F32","shape":[1]}})", std::string(4, '\0')),
                   {"needs dtype, shape and data_offsets"});
    expect_refused("metadata_value", hand_built_file(R"({"__metadata__":{"step":3}})", ""),
                   {"__metadata__ value of 'step' is not a string"});
    // A shape nested 200000 deep: refused by depth while parsing (no recursive walk or dump of it).
    const std::string deep_shape = std::string(200000, '[') + "1" + std::string(200000, ']');
    expect_refused("deep_shape",
                   hand_built_file(R"({"a":{"dtype":"F32","shape":)" + deep_shape + R"(,"data_offsets":[0,4]}})",
                                   std::string(4, '\0')),
                   {"nested deeper than 32 levels"});
    // A long shape in a message is quoted, not copied whole.
    std::string long_shape = "[";
    for (int i = 0; i < 20000; ++i) long_shape += "-1,";
    long_shape.back() = ']';
    const std::string long_path = dir + "/long_shape.safetensors";
    write_bytes(long_path, hand_built_file(R"({"a":{"dtype":"F32","shape":)" + long_shape + R"(,"data_offsets":[0,4]}})",
                                           std::string(4, '\0')));
    try {
        nn::read_safetensors(long_path);
        ADD_FAILURE() << "a negative extent was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_LT(std::string(e.what()).size(), 600u) << "the message copies the whole shape";
        EXPECT_NE(std::string(e.what()).find("characters)"), std::string::npos) << e.what();
    }
}

TEST(Safetensors, ADirectoryInPlaceOfAFileIsNamedAsOne) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_directory_as_file") + "/stage.safetensors";
    fs::create_directories(dir);
    expect_runtime_error([&] { nn::read_safetensors(dir); }, {dir, "it is a directory"});
}

TEST(Safetensors, MissingFileIsAnIoErrorNamingIt) {
    const std::string path = mp::testing::fresh_temp_dir("checkpoint_missing") + "/absent.safetensors";
    expect_runtime_error([&] { nn::read_safetensors(path); }, {path, "cannot open"});
}

TEST(Safetensors, CudaTensorsAreWrittenFromTheDevice) {
    MP_REQUIRE_GPU();
    const std::string path = mp::testing::fresh_temp_dir("checkpoint_cuda") + "/t.safetensors";
    Tensor host = random_tensor({3, 4}, 5);
    nn::write_safetensors(path, {{"w", host.to(Device::cuda())}});
    expect_equal(nn::read_safetensors(path).tensors.at("w"), host, "tensor written from the GPU");

    // A stage checkpoint saved from and loaded into CUDA parameters and optimizer state.
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_cuda_stage");
    auto model = nn::mlp({4, 6, 3}, 1);
    model->to(Device::cuda());
    nn::AdamW optimizer(model->parameters(), {});
    nn::save_stage_checkpoint(dir, 0, 1, *model, optimizer, 1);
    auto fresh = nn::mlp({4, 6, 3}, 2);
    fresh->to(Device::cuda());
    nn::AdamW fresh_optimizer(fresh->parameters(), {});
    nn::load_stage_checkpoint(dir, 0, 1, *fresh, fresh_optimizer);
    for (size_t i = 0; i < model->parameters().size(); ++i) {
        EXPECT_TRUE(fresh->parameters()[i].device().is_cuda());
        expect_equal(fresh->parameters()[i], model->parameters()[i], "CUDA parameter after load");
    }
}

// ---------------------------------------------------------------- atomic writes

TEST(AtomicWrite, FailureMidWriteKeepsThePreviousFileAndLeavesNoTemporary) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_atomic_failure");
    const std::string path = dir + "/file.bin";
    nn::write_file_atomically(path, std::string("previous contents"));
    EXPECT_THROW(nn::write_file_atomically(path,
                                           [](const nn::ByteSink& sink) {
                                               sink("half of the new", 15);
                                               throw std::runtime_error("simulated crash");
                                           }),
                 std::runtime_error);
    EXPECT_EQ(nn::read_file_bytes(path), "previous contents");
    int entries = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        (void)entry;
        ++entries;
    }
    EXPECT_EQ(entries, 1) << "the temporary file was not removed";
    expect_runtime_error([&] { nn::write_file_atomically(dir + "/no/such/dir/file", std::string("x")); },
                         {"no/such/dir/file", "cannot create"});
}

TEST(AtomicWrite, StaleTemporaryFromACrashedSaveLeavesThePreviousCheckpointLoadable) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_atomic_crash");
    auto model = nn::mlp({4, 6, 3}, 1);
    nn::AdamW optimizer(model->parameters(), {});
    nn::save_stage_checkpoint(dir, 0, 1, *model, optimizer, 5);
    // A save that crashed after writing part of its temporary files, before any rename.
    write_bytes(nn::stage_checkpoint_path(dir, 0, 1, 5) + ".tmp.4242", "\x10\x00\x00\x00 partial garbage");
    write_bytes(nn::checkpoint_index_path(dir) + ".tmp.4242", "{\"format\": \"minipi");

    auto fresh = nn::mlp({4, 6, 3}, 2);
    nn::AdamW fresh_optimizer(fresh->parameters(), {});
    EXPECT_EQ(nn::load_stage_checkpoint(dir, 0, 1, *fresh, fresh_optimizer), 5);
    for (size_t i = 0; i < model->parameters().size(); ++i)
        expect_equal(fresh->parameters()[i], model->parameters()[i], "parameter after load");

    // The next save of those files removes the crashed save's leftovers.
    nn::save_stage_checkpoint(dir, 0, 1, *model, optimizer, 5);
    EXPECT_FALSE(std::filesystem::exists(nn::stage_checkpoint_path(dir, 0, 1, 5) + ".tmp.4242"));
    EXPECT_FALSE(std::filesystem::exists(nn::checkpoint_index_path(dir) + ".tmp.4242"));
}

// Several stages: the index is published only after every stage has saved, so a save that
// died after some stages wrote their files leaves the previous step loadable on every stage.
TEST(AtomicWrite, InterruptedMultiStageSaveLeavesThePreviousStepLoadable) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_multi_stage_crash");
    auto whole = nn::mlp({4, 6, 6, 3}, 1);  // 5 layers: stage 0 = layers 0-1, stage 1 = layers 2-4
    auto stage0 = whole->slice(0, 2), stage1 = whole->slice(2, 5);
    nn::SGD sgd0(stage0->parameters(), {0.1, 0.0, 0.0}), sgd1(stage1->parameters(), {0.1, 0.0, 0.0});
    nn::save_stage_checkpoint(dir, 0, 2, *stage0, sgd0, 3);
    nn::save_stage_checkpoint(dir, 1, 2, *stage1, sgd1, 3);
    nn::write_checkpoint_index(dir, 2, 3);
    std::vector<Tensor> at_step3;
    for (const Tensor& p : whole->parameters()) at_step3.push_back(p.clone());
    // Step 6 changes the parameters; stage 0 saves, then the job dies before stage 1 and the index.
    for (const Tensor& p : whole->parameters()) {
        Tensor target = p;
        target.fill_(0.5);
    }
    nn::save_stage_checkpoint(dir, 0, 2, *stage0, sgd0, 6);

    auto fresh = nn::mlp({4, 6, 6, 3}, 2);
    auto fresh0 = fresh->slice(0, 2), fresh1 = fresh->slice(2, 5);
    nn::SGD fresh_sgd0(fresh0->parameters(), {0.1, 0.0, 0.0}), fresh_sgd1(fresh1->parameters(), {0.1, 0.0, 0.0});
    EXPECT_EQ(nn::load_stage_checkpoint(dir, 0, 2, *fresh0, fresh_sgd0), 3);
    EXPECT_EQ(nn::load_stage_checkpoint(dir, 1, 2, *fresh1, fresh_sgd1), 3);
    for (size_t i = 0; i < at_step3.size(); ++i) expect_equal(fresh->parameters()[i], at_step3[i], "parameter at step 3");

    // Publishing later steps keeps the newest two complete checkpoints and removes older ones.
    for (int64_t step : {6, 9}) {
        nn::save_stage_checkpoint(dir, 0, 2, *stage0, sgd0, step);
        nn::save_stage_checkpoint(dir, 1, 2, *stage1, sgd1, step);
        nn::write_checkpoint_index(dir, 2, step);
    }
    EXPECT_FALSE(fs::exists(fs::path(dir) / "step-3"));
    EXPECT_TRUE(fs::exists(fs::path(dir) / "step-6"));
    EXPECT_TRUE(fs::exists(fs::path(dir) / "step-9"));
}

// ---------------------------------------------------------------- resume bit-identity

namespace {

struct TokenBatch {
    Tensor ids, targets;
};

// One training step of the whole model; returns the loss.
float train_step(nn::Module& model, const std::vector<nn::Optimizer*>& optimizers, const TokenBatch& batch,
                 int64_t step) {
    for (nn::Optimizer* optimizer : optimizers) {
        optimizer->set_lr(nn::cosine_lr(step, 2, 9, 1e-2, 1e-3));
        optimizer->zero_grad();
    }
    autograd::Tape tape;
    float loss_value = 0;
    {
        autograd::TapeScope scope(tape);
        Tensor loss = fn::cross_entropy(model.forward(batch.ids), batch.targets);
        tape.backward(loss);
        loss_value = static_cast<float>(loss.item());
    }
    nn::clip_grad_norm(model.parameters(), 1.0);
    for (nn::Optimizer* optimizer : optimizers) optimizer->step();
    return loss_value;
}

// Everything that must be bitwise equal after a resume: parameters and optimizer state.
std::vector<Tensor> snapshot(const nn::Module& model, const std::vector<nn::Optimizer*>& optimizers) {
    std::vector<Tensor> out;
    for (const Tensor& p : model.parameters()) out.push_back(p.clone());
    for (nn::Optimizer* optimizer : optimizers)
        for (const auto& [kind, tensors] : optimizer->state())
            for (const Tensor& t : tensors)
                if (t.defined()) out.push_back(t.clone());
    return out;
}

}  // namespace

TEST(Resume, TwoStageGptContinuesBitIdentically) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_resume_gpt");
    nn::GPTConfig config;
    config.vocab = 13;
    config.context = 8;
    config.layers = 2;
    config.heads = 2;
    config.channels = 8;
    config.dropout = 0.0;  // dropout generators are not checkpointed
    constexpr int64_t kSteps = 3;
    std::vector<TokenBatch> batches;
    for (int64_t i = 0; i < 3 * kSteps; ++i)
        batches.push_back({random_ids({2, 8}, 13, 100 + i), random_ids({2, 8}, 13, 200 + i)});
    const nn::AdamWOptions adamw = {1e-2, 0.9, 0.95, 1e-8, 0.1};

    // The whole model split into two stages, each with its own optimizer (as on two ranks).
    auto model = nn::gpt(config);
    const size_t split = 2;  // [embed, blocks.0] | [blocks.1, ln_f, head]
    const std::vector<nn::LayerRange> ranges = {{0, split}, {split, static_cast<int64_t>(model->size())}};
    auto stage0 = model->slice(0, split), stage1 = model->slice(split, model->size());
    nn::AdamW optimizer0(stage0->parameters(), adamw), optimizer1(stage1->parameters(), adamw);
    std::vector<nn::Optimizer*> optimizers = {&optimizer0, &optimizer1};
    for (int64_t step = 0; step < kSteps; ++step) train_step(*model, optimizers, batches[step], step);
    nn::save_stage_checkpoint(dir, 0, 2, *stage0, optimizer0, kSteps, ranges);
    nn::save_stage_checkpoint(dir, 1, 2, *stage1, optimizer1, kSteps, ranges);
    nn::write_checkpoint_index(dir, 2, kSteps, ranges);  // published once both stages have saved
    std::vector<float> expected_losses;
    for (int64_t step = kSteps; step < 2 * kSteps; ++step)
        expected_losses.push_back(train_step(*model, optimizers, batches[step], step));
    std::vector<Tensor> expected_state = snapshot(*model, optimizers);

    // A fresh model from another seed: only the load can make it continue the same run.
    config.seed = 4242;
    auto resumed = nn::gpt(config);
    auto resumed0 = resumed->slice(0, split), resumed1 = resumed->slice(split, resumed->size());
    nn::AdamW resumed_optimizer0(resumed0->parameters(), adamw), resumed_optimizer1(resumed1->parameters(), adamw);
    std::vector<nn::Optimizer*> resumed_optimizers = {&resumed_optimizer0, &resumed_optimizer1};
    EXPECT_EQ(nn::load_stage_checkpoint(dir, 0, 2, *resumed0, resumed_optimizer0), kSteps);
    EXPECT_EQ(nn::load_stage_checkpoint(dir, 1, 2, *resumed1, resumed_optimizer1), kSteps);
    EXPECT_EQ(resumed_optimizer0.steps_taken(), kSteps);
    std::vector<float> resumed_losses;
    for (int64_t step = kSteps; step < 2 * kSteps; ++step)
        resumed_losses.push_back(train_step(*resumed, resumed_optimizers, batches[step], step));

    ASSERT_EQ(resumed_losses.size(), expected_losses.size());
    for (size_t i = 0; i < expected_losses.size(); ++i)
        EXPECT_EQ(std::memcmp(&resumed_losses[i], &expected_losses[i], sizeof(float)), 0)
            << "loss " << i << ": " << resumed_losses[i] << " vs " << expected_losses[i];
    std::vector<Tensor> resumed_state = snapshot(*resumed, resumed_optimizers);
    ASSERT_EQ(resumed_state.size(), expected_state.size());
    for (size_t i = 0; i < expected_state.size(); ++i)
        expect_equal(resumed_state[i], expected_state[i], "parameter or optimizer state " + std::to_string(i));

    // The index records the stages, their files and layer ranges.
    nlohmann::json index = nlohmann::json::parse(nn::read_file_bytes(nn::checkpoint_index_path(dir)));
    EXPECT_EQ(index["stages"], 2);
    EXPECT_EQ(index["step"], kSteps);
    EXPECT_EQ(index["files"][1], str("step-", kSteps, "/stage-1-of-2.safetensors"));
    EXPECT_EQ(index["layer_ranges"][1][0], split);
}

TEST(Resume, SgdMomentumContinuesBitIdentically) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_resume_sgd");
    Tensor x = random_tensor({5, 4}, 1), y = random_tensor({5, 3}, 2);
    auto run_steps = [&](nn::Module& model, nn::Optimizer& optimizer, int steps) {
        for (int i = 0; i < steps; ++i) {
            optimizer.zero_grad();
            autograd::Tape tape;
            autograd::TapeScope scope(tape);
            tape.backward(fn::mse(model.forward(x), y));
            optimizer.step();
        }
    };
    const nn::SGDOptions sgd = {0.05, 0.9, 0.01};
    auto model = nn::mlp({4, 6, 3}, 1);
    nn::SGD optimizer(model->parameters(), sgd);
    run_steps(*model, optimizer, 2);
    nn::save_stage_checkpoint(dir, 0, 1, *model, optimizer, 2);
    run_steps(*model, optimizer, 2);

    auto resumed = nn::mlp({4, 6, 3}, 9);
    nn::SGD resumed_optimizer(resumed->parameters(), sgd);
    nn::load_stage_checkpoint(dir, 0, 1, *resumed, resumed_optimizer);
    run_steps(*resumed, resumed_optimizer, 2);
    std::vector<nn::Optimizer*> expected_optimizers = {&optimizer}, resumed_optimizers = {&resumed_optimizer};
    std::vector<Tensor> expected = snapshot(*model, expected_optimizers), actual = snapshot(*resumed, resumed_optimizers);
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) expect_equal(actual[i], expected[i], "SGD state " + std::to_string(i));
}

// ---------------------------------------------------------------- mismatches

TEST(Resume, MismatchesAreRefusedNamingFileAndKey) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_mismatch");
    auto model = nn::mlp({4, 6, 3}, 1);
    nn::AdamW optimizer(model->parameters(), {});
    nn::save_stage_checkpoint(dir, 0, 1, *model, optimizer, 3);
    const std::string path = nn::stage_checkpoint_path(dir, 0, 1, 3);
    const nn::SafetensorsContents saved = nn::read_safetensors(path);

    auto target = nn::mlp({4, 6, 3}, 7);
    nn::AdamW target_optimizer(target->parameters(), {});
    const std::vector<Tensor> before = snapshot(*target, {&target_optimizer});
    // Rewrites the stage file with one change to its tensors, then expects the load refused.
    auto expect_refused = [&](const std::function<void(std::map<std::string, Tensor>&)>& change,
                              const std::vector<std::string>& fragments) {
        std::map<std::string, Tensor> tensors = saved.tensors;
        change(tensors);
        nn::write_safetensors(path, nn::NamedTensors(tensors.begin(), tensors.end()), saved.metadata);
        std::vector<std::string> with_file = fragments;
        with_file.push_back(path);
        expect_invalid_argument([&] { nn::load_stage_checkpoint(dir, 0, 1, *target, target_optimizer); }, with_file);
    };
    expect_refused([](auto& t) { t.erase("optim.2.bias.exp_avg_sq"); }, {"lacks tensor 'optim.2.bias.exp_avg_sq'"});
    expect_refused([](auto& t) { t["model.3.weight"] = Tensor::zeros({2}); }, {"has tensor 'model.3.weight'", "do not have"});
    expect_refused([](auto& t) { t["model.0.weight"] = Tensor::zeros({6, 5}); },
                   {"'model.0.weight'", "shape (6, 5)", "expects (6, 4)"});
    expect_refused([](auto& t) { t["model.0.bias"] = Tensor::zeros({6}, DType::Float64); },
                   {"'model.0.bias'", "float64", "expects float32"});
    // The same keys, shapes and dtypes but one changed value: caught by the tensor's checksum.
    expect_refused([](auto& t) { t["model.0.bias"] = Tensor::full({6}, 0.5); },
                   {"tensor 'model.0.bias' fails its checksum", "the file is corrupt"});
    // A refused load leaves the target untouched.
    std::vector<Tensor> after = snapshot(*target, {&target_optimizer});
    for (size_t i = 0; i < before.size(); ++i) expect_equal(after[i], before[i], "state after a refused load");
    nn::write_safetensors(path, nn::NamedTensors(saved.tensors.begin(), saved.tensors.end()), saved.metadata);

    // An edited metadata field (the optimizer's step count) fails the metadata's checksum.
    {
        nn::SafetensorsMetadata edited = saved.metadata;
        edited["optimizer_steps"] = "7";
        nn::write_safetensors(path, nn::NamedTensors(saved.tensors.begin(), saved.tensors.end()), edited);
        expect_invalid_argument([&] { nn::load_stage_checkpoint(dir, 0, 1, *target, target_optimizer); },
                                {path, "metadata fails its checksum", "a field was edited"});
    }
    // One flipped byte in the data section of the file itself.
    {
        std::string bytes = nn::encode_safetensors(nn::NamedTensors(saved.tensors.begin(), saved.tensors.end()),
                                                   saved.metadata);
        bytes[bytes.size() - 5] ^= 0x10;
        write_bytes(path, bytes);
        expect_invalid_argument([&] { nn::load_stage_checkpoint(dir, 0, 1, *target, target_optimizer); },
                                {path, "fails its checksum", "the file is corrupt"});
    }
    nn::write_safetensors(path, nn::NamedTensors(saved.tensors.begin(), saved.tensors.end()), saved.metadata);

    // A different optimizer type.
    nn::SGD sgd(target->parameters(), {0.1, 0.9, 0.0});
    expect_invalid_argument([&] { nn::load_stage_checkpoint(dir, 0, 1, *target, sgd); }, {path, "AdamW", "uses SGD"});
    // Files from different steps: the index says step 4, the stage file under step-4 is step 3's.
    const std::string misplaced = nn::stage_checkpoint_path(dir, 0, 1, 4);
    fs::create_directories(fs::path(misplaced).parent_path());
    fs::copy_file(path, misplaced);
    nn::write_checkpoint_index(dir, 1, 4);
    expect_invalid_argument([&] { nn::load_stage_checkpoint(dir, 0, 1, *target, target_optimizer); },
                            {misplaced, "step 3", "records step 4"});
    // A different stage count: the index of a 4-stage run, loaded by a 2-stage run.
    const std::string four = mp::testing::fresh_temp_dir("checkpoint_mismatch_four_stages");
    nn::save_stage_checkpoint(four, 0, 4, *model, optimizer, 3);
    nn::write_checkpoint_index(four, 4, 3);  // published as a 4-stage run would after its barrier
    expect_invalid_argument([&] { nn::load_stage_checkpoint(four, 0, 2, *target, target_optimizer); },
                            {four + "/index.json", "was written for 4 stages, this run has 2"});
    // A missing stage file and a missing index are I/O errors naming the file.
    expect_runtime_error([&] { nn::load_stage_checkpoint(four, 1, 4, *target, target_optimizer); },
                         {nn::stage_checkpoint_path(four, 1, 4, 3)});
    expect_runtime_error([&] { nn::load_stage_checkpoint(mp::testing::fresh_temp_dir("checkpoint_empty"), 0, 1, *target, target_optimizer); },
                         {"index.json", "cannot open"});
    expect_invalid_argument([&] { nn::load_stage_checkpoint(four, 4, 4, *target, target_optimizer); },
                            {"stage 4 of 4"});
}

// ---------------------------------------------------------------- whole-model export

// With MINIPIPE_SAFETENSORS_EXPORT=<path>, also writes the export that
// tests/fixtures/check_safetensors.py loads with PyTorch.
// A caller's expected run entry (the trainer's stage placement) is checked before the tensors, so
// a differently laid-out run is told why; an entry the file lacks (older saves) is not checked.
TEST(Resume, ExpectedRunEntriesAreCheckedFirst) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_expected_run");
    auto model = nn::mlp({4, 6, 3}, 1);
    nn::SGD sgd(model->parameters(), {0.1, 0.0, 0.0});
    nn::save_stage_checkpoint(dir, 0, 1, *model, sgd, 2, {}, {{"stage_placement", "0,1"}});
    auto other_shape = nn::mlp({4, 5, 3}, 2);  // would fail on its tensors, but the placement comes first
    nn::SGD other_sgd(other_shape->parameters(), {0.1, 0.0, 0.0});
    expect_invalid_argument(
        [&] {
            nn::load_stage_checkpoint(dir, 0, 1, *other_shape, other_sgd, nullptr,
                                      {{"stage_placement", "0,1,1,0", "resume as it was saved"}});
        },
        {"was saved with stage_placement \"0,1\" but this run has \"0,1,1,0\": resume as it was saved"});
    auto same = nn::mlp({4, 6, 3}, 3);
    nn::SGD same_sgd(same->parameters(), {0.1, 0.0, 0.0});
    EXPECT_EQ(nn::load_stage_checkpoint(dir, 0, 1, *same, same_sgd, nullptr, {{"stage_placement", "0,1", ""}}), 2);
    EXPECT_EQ(nn::load_stage_checkpoint(dir, 0, 1, *same, same_sgd, nullptr, {{"not_saved", "x", ""}}), 2);
}

TEST(Export, WholeModelIsOnePlainSafetensorsFile) {
    const std::string dir = mp::testing::fresh_temp_dir("checkpoint_export");
    nn::GPTConfig config;
    config.vocab = 13;
    config.context = 8;
    config.layers = 1;
    config.heads = 2;
    config.channels = 8;
    auto model = nn::gpt(config);
    nn::NamedTensors named = fixture_tensors();
    for (const auto& [name, parameter] : model->named_parameters()) named.push_back({"gpt." + name, parameter});
    const char* requested = std::getenv("MINIPIPE_SAFETENSORS_EXPORT");
    const std::string path = requested ? requested : dir + "/model.safetensors";
    nn::export_model(path, named);
    nn::SafetensorsContents read = nn::read_safetensors(path);
    EXPECT_EQ(read.metadata.at("format"), "pt");
    ASSERT_EQ(read.tensors.size(), named.size());
    for (const auto& [name, tensor] : named) expect_equal(read.tensors.at(name), tensor, name);
}
