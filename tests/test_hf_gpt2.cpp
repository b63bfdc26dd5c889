// Hugging Face GPT-2 in and out, and tied embeddings in one process. The fixture
// (tests/fixtures/hf_gpt2_tiny/, made by tests/fixtures/make_hf_gpt2_fixture.py) is a random GPT-2
// saved by transformers' save_pretrained, with a batch, its logits, its loss and every gradient
// computed by transformers in float64. minipipe imports it and must agree; malformed checkpoints
// are refused naming the key and the shapes; an export re-imports to the same tensors.
//
// Tolerance (float32 against a float64 reference, 2 blocks, C = 64, vocab 96, T = 16): the longest
// sums are the MLP projection's 256-term dots, each within 256·u ≈ 1.5e-5 relative of exact
// (u = 2^-24); about ten such stages are chained through forward and backward, so 1.5e-4 relative
// is the worst case: rtol 2e-4. Entries that are near zero (gradients of ~1e-4 built from terms of
// ~1) carry an absolute error of a few u times those terms: atol 1e-6. The measured errors are
// printed (far below the bound: rounding errors do not all align).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/checkpoint.h"
#include "nn/hf_gpt2.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "tests/support/test_util.h"

using namespace mp;
using json = nlohmann::json;
namespace fs = std::filesystem;
using mp::testing::expect_close;
using mp::testing::expect_invalid_argument;

namespace {

constexpr double kRtol = 2e-4, kAtol = 1e-6;  // derived at the top of this file

std::string fixture_dir() { return std::string(MP_SOURCE_DIR) + "/tests/fixtures/hf_gpt2_tiny"; }

const json& expected() {
    static const json loaded = [] {
        std::ifstream in(fixture_dir() + "/expected.json");
        if (!in) throw std::runtime_error("cannot open " + fixture_dir() + "/expected.json");
        return json::parse(in);
    }();
    return loaded;
}

// The fixture's model, imported.
std::shared_ptr<nn::Sequential> imported_model(const nn::HfGpt2Config& hf) {
    auto model = nn::gpt(hf.gpt);
    nn::load_hf_gpt2(hf, *model);
    return model;
}

// max |a − b| / (|b| + atol/rtol), the quantity the tolerance bounds, and max |a − b|.
std::pair<double, double> errors(const Tensor& actual, const Tensor& expected_values) {
    std::vector<double> a = mp::testing::to_doubles(actual), b = mp::testing::to_doubles(expected_values);
    double relative = 0, absolute = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        absolute = std::max(absolute, std::fabs(a[i] - b[i]));
        relative = std::max(relative, std::fabs(a[i] - b[i]) / (std::fabs(b[i]) + kAtol / kRtol));
    }
    return {relative, absolute};
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

// A copy of the fixture in `dir` with its tensors changed by `edit` and its config.json by `edit_config`.
std::string edited_fixture(const std::string& name, const std::function<void(nn::NamedTensors&)>& edit,
                           const std::function<void(json&)>& edit_config = {}) {
    const std::string dir = mp::testing::fresh_temp_dir(std::string("hf_gpt2_") + name);
    nn::SafetensorsContents contents = nn::read_safetensors(fixture_dir() + "/model.safetensors");
    nn::NamedTensors tensors(contents.tensors.begin(), contents.tensors.end());
    edit(tensors);
    nn::write_safetensors(dir + "/model.safetensors", tensors, contents.metadata);
    std::ifstream in(fixture_dir() + "/config.json");
    json config = json::parse(in);
    if (edit_config) edit_config(config);
    write_text(dir + "/config.json", config.dump(2));
    return dir;
}

}  // namespace

TEST(HfGpt2, ConfigOfTheFixture) {
    nn::HfGpt2Config hf = nn::read_hf_gpt2_config(fixture_dir());
    EXPECT_EQ(hf.gpt.layers, 2);
    EXPECT_EQ(hf.gpt.heads, 4);
    EXPECT_EQ(hf.gpt.channels, 64);
    EXPECT_EQ(hf.gpt.vocab, 96);
    EXPECT_EQ(hf.gpt.context, 32);
    EXPECT_EQ(hf.gpt.layer_norm_eps, 1e-5);
    // The weights file itself works as well as its directory.
    EXPECT_EQ(nn::read_hf_gpt2_config(fixture_dir() + "/model.safetensors").config_path, hf.config_path);
    // What transformers wrote: float32 tensors, metadata {"format": "pt"}, the "transformer." prefix.
    nn::SafetensorsIndex index = nn::read_safetensors_index(hf.weights_path);
    EXPECT_EQ(index.metadata.at("format"), "pt");
    EXPECT_EQ(index.entries.size(), 4u + 12u * 2u);  // wte, wpe, ln_f ×2, 12 per block; no lm_head, no buffers
    for (const auto& [key, entry] : index.entries) {
        EXPECT_EQ(entry.dtype, DType::Float32) << key;
        EXPECT_EQ(key.rfind("transformer.", 0), 0u) << key;
    }
}

namespace {

// Logits, loss and every gradient against transformers (float64), in one process on `device`
// (on CUDA the same tolerance: cuBLAS and the warp reductions sum in other orders, same bound).
void check_fixture(Device device) {
    const json& f = expected();
    nn::HfGpt2Config hf = nn::read_hf_gpt2_config(fixture_dir());
    auto model = imported_model(hf);
    model->to(device);
    const int64_t B = f.at("batch"), T = f.at("time");
    Tensor ids = Tensor::from_vector(f.at("ids").get<std::vector<int32_t>>(), {B, T}, device);
    Tensor targets = Tensor::from_vector(f.at("targets").get<std::vector<int32_t>>(), {B, T}, device);
    autograd::Tape tape;
    Tensor logits, loss;
    {
        autograd::TapeScope scope(tape);
        logits = model->forward(ids);
        loss = fn::cross_entropy(logits, targets, f.at("ignore_index").get<int>());
        tape.backward(loss);
    }
    const json& logits_entry = f.at("logits");
    const Tensor want_logits = Tensor::from_vector(logits_entry.at("data").get<std::vector<float>>(),
                                                   logits_entry.at("shape").get<Shape>());
    expect_close(logits, want_logits, kRtol, kAtol, "logits on " + device.str());
    const double want_loss = f.at("loss");
    EXPECT_NEAR(loss.item(), want_loss, kRtol * want_loss);

    // The expected gradients are stored like the weights: import them into a second model.
    nn::HfGpt2Config grads_file = hf;
    grads_file.weights_path = fixture_dir() + "/expected_grads.safetensors";
    auto expected_grads = imported_model(grads_file);
    auto want = expected_grads->named_parameters();
    auto got = model->named_parameters();
    ASSERT_EQ(got.size(), want.size());
    double worst_grad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].first, want[i].first);
        expect_close(autograd::grad_of(got[i].second), want[i].second, kRtol, kAtol,
                     "gradient of " + got[i].first + " on " + device.str());
        worst_grad = std::max(worst_grad, errors(autograd::grad_of(got[i].second), want[i].second).first);
    }
    auto [logits_relative, logits_absolute] = errors(logits, want_logits);
    std::printf("[ measured ] %s: logits max abs error %.3g (max scaled relative %.3g), loss error %.3g, gradients "
                "max scaled relative %.3g\n",
                device.str().c_str(), logits_absolute, logits_relative, std::fabs(loss.item() - want_loss), worst_grad);
}

}  // namespace

TEST(HfGpt2, ImportedFixtureMatchesTransformers) { check_fixture(Device::cpu()); }

TEST(HfGpt2, ImportedFixtureMatchesTransformersOnCuda) {
    MP_REQUIRE_GPU();
    check_fixture(Device::cuda(0));
}

// Tied embeddings in one process: one parameter (listed once, updated once, checkpointed once).
TEST(HfGpt2, TiedEmbeddingIsOneParameterInOneProcess) {
    nn::GPTConfig config;
    config.vocab = 11, config.context = 4, config.layers = 1, config.heads = 2, config.channels = 8;
    config.tie_embeddings = true;
    auto tied = nn::gpt(config);
    config.tie_embeddings = false;
    auto untied = nn::gpt(config);
    EXPECT_EQ(tied->parameters().size() + 1, untied->parameters().size());
    EXPECT_EQ(tied->num_parameters() + 11 * 8, untied->num_parameters());
    config.tie_embeddings = true;
    EXPECT_EQ(nn::gpt_spec(config).total_parameters(), tied->num_parameters());
    for (auto& [name, p] : tied->named_parameters()) EXPECT_NE(name, "head.weight");
    EXPECT_TRUE(tied->has_parameter("head.weight"));

    // A head built alone starts as a copy of embed.wte; built together they are one tensor.
    nn::ModelSpec spec = nn::gpt_spec(config);
    auto embed = spec.build(0, 1), head = spec.build(2, 3);
    mp::testing::expect_equal(head->named_parameters().back().second, embed->named_parameters().front().second,
                              "head.weight built alone vs embed.wte");

    // One SGD step moves the shared tensor once, by the sum of both uses' gradients.
    Tensor ids = mp::testing::random_ids({2, 4}, 11, 1), targets = mp::testing::random_ids({2, 4}, 11, 2);
    Tensor wte = tied->named_parameters().front().second;
    Tensor before = wte.clone();
    nn::SGD sgd(tied->parameters(), {0.5, 0.0, 0.0});
    autograd::Tape tape;
    {
        autograd::TapeScope scope(tape);
        tape.backward(fn::cross_entropy(tied->forward(ids), targets));
    }
    Tensor grad = autograd::grad_of(wte).clone();
    sgd.step();
    std::vector<double> b = mp::testing::to_doubles(before), g = mp::testing::to_doubles(grad),
                        a = mp::testing::to_doubles(wte);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_FLOAT_EQ(a[i], static_cast<float>(b[i] - 0.5 * g[i])) << i;

    // Module::to keeps the tie: still one tensor after a dtype change.
    tied->to(DType::Float64);
    EXPECT_EQ(tied->parameters().size() + 1, untied->parameters().size());

    // The checkpoint stores it once, under embed.wte.
    auto model = nn::gpt(config);
    nn::SGD optimizer(model->parameters(), {0.1, 0.9, 0.0});
    const std::string dir = mp::testing::fresh_temp_dir("hf_gpt2_tied_checkpoint");
    nn::save_stage_checkpoint(dir, 0, 1, *model, optimizer, 3);
    nn::SafetensorsContents saved = nn::read_safetensors(nn::stage_checkpoint_path(dir, 0, 1, 3));
    EXPECT_TRUE(saved.tensors.count("model.embed.wte"));
    EXPECT_FALSE(saved.tensors.count("model.head.weight"));
}

// A pipeline stage reads its own tensors: the head alone gets ln_f and wte, the embedding alone
// wte and wpe, each equal to the whole model's.
TEST(HfGpt2, StagesImportTheirOwnLayers) {
    nn::HfGpt2Config hf = nn::read_hf_gpt2_config(fixture_dir());
    nn::ModelSpec spec = nn::gpt_spec(hf.gpt);
    ASSERT_EQ(spec.size(), nn::gpt_layer_count(hf.gpt.layers));  // what the pipeline partitions
    auto whole = imported_model(hf);
    std::map<std::string, Tensor> by_name;
    for (auto& [name, p] : whole->named_parameters()) by_name[name] = p;
    for (int64_t begin = 0; begin < spec.size(); ++begin) {
        auto stage = spec.build(begin, begin + 1);
        nn::load_hf_gpt2(hf, *stage);
        for (auto& [name, p] : stage->named_parameters())
            mp::testing::expect_equal(p, by_name.at(name == "head.weight" ? "embed.wte" : name), name);
    }
}

// Keys saved without the "transformer." prefix (a hub snapshot of GPT2Model), with the old mask
// buffers and an lm_head.weight equal to wte, load the same.
TEST(HfGpt2, KeysWithoutPrefixLoadTheSame) {
    const std::string dir = edited_fixture("no_prefix", [](nn::NamedTensors& tensors) {
        for (auto& [name, t] : tensors) name = name.substr(std::string("transformer.").size());
        for (size_t i = 0, n = tensors.size(); i < n; ++i)
            if (tensors[i].first == "wte.weight") tensors.push_back({"lm_head.weight", tensors[i].second.clone()});
        tensors.push_back({"h.0.attn.bias", Tensor::zeros({1, 1, 32, 32})});  // old buffers are dropped
        tensors.push_back({"h.1.attn.masked_bias", Tensor::zeros({})});
    });
    auto reference = imported_model(nn::read_hf_gpt2_config(fixture_dir()));
    auto model = imported_model(nn::read_hf_gpt2_config(dir));
    auto a = model->named_parameters(), b = reference->named_parameters();
    for (size_t i = 0; i < a.size(); ++i) mp::testing::expect_equal(a[i].second, b[i].second, a[i].first);
}

TEST(HfGpt2, RefusesMismatchesNamingKeyAndShapes) {
    auto load = [](const std::string& dir) {
        nn::HfGpt2Config hf = nn::read_hf_gpt2_config(dir);
        imported_model(hf);
    };
    // A missing key.
    const std::string missing = edited_fixture("missing", [](nn::NamedTensors& tensors) {
        tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                     [](auto& e) { return e.first == "transformer.h.1.mlp.c_fc.weight"; }),
                      tensors.end());
    });
    expect_invalid_argument([&] { load(missing); }, {"missing key 'h.1.mlp.c_fc.weight'", "(64, 256)", "n_layer 2"});
    // A wrong shape.
    const std::string shape = edited_fixture("shape", [](nn::NamedTensors& tensors) {
        for (auto& [name, t] : tensors)
            if (name == "transformer.h.0.attn.c_attn.weight") t = Tensor::zeros({64, 96});
    });
    expect_invalid_argument([&] { load(shape); }, {"'transformer.h.0.attn.c_attn.weight'", "(64, 96)", "(64, 192)"});
    // An unexpected key.
    const std::string extra = edited_fixture("extra", [](nn::NamedTensors& tensors) {
        tensors.push_back({"transformer.h.2.ln_1.weight", Tensor::zeros({64})});
    });
    expect_invalid_argument([&] { load(extra); }, {"unexpected key 'transformer.h.2.ln_1.weight'", "(64)"});
    // An untied head.
    const std::string untied = edited_fixture("untied", [](nn::NamedTensors& tensors) {
        tensors.push_back({"lm_head.weight", Tensor::zeros({96, 64})});
    });
    expect_invalid_argument([&] { load(untied); }, {"'lm_head.weight' differs from 'transformer.wte.weight'"});
    // config.json: another model type, another activation, an untied head, cross-attention.
    auto with_config = [&](const std::string& name, const std::function<void(json&)>& edit) {
        return edited_fixture(name, [](nn::NamedTensors&) {}, edit);
    };
    expect_invalid_argument([&] { load(with_config("llama", [](json& c) { c["model_type"] = "llama"; })); },
                            {"model_type is \"llama\"", "gpt2"});
    expect_invalid_argument(
        [&] { load(with_config("relu", [](json& c) { c["activation_function"] = "relu"; })); },
        {"activation_function \"relu\"", "gelu_new"});
    expect_invalid_argument(
        [&] { load(with_config("arch", [](json& c) { c["architectures"] = {"GPT2ForSequenceClassification"}; })); },
        {"\"GPT2ForSequenceClassification\""});
    expect_invalid_argument(
        [&] { load(with_config("tie", [](json& c) { c["tie_word_embeddings"] = false; })); },
        {"'tie_word_embeddings' is false"});
    expect_invalid_argument([&] { load(with_config("inner", [](json& c) { c["n_inner"] = 100; })); },
                            {"n_inner 100", "256"});
    expect_invalid_argument([&] { load(with_config("no_layers", [](json& c) { c.erase("n_layer"); })); },
                            {"no 'n_layer'"});
    expect_invalid_argument([&] { nn::read_hf_gpt2_config(mp::testing::fresh_temp_dir("hf_gpt2_empty")); }, {"no weights file"});
}

TEST(HfGpt2, RefusesATruncatedFile) {
    const std::string dir = mp::testing::fresh_temp_dir("hf_gpt2_truncated");
    std::string bytes = nn::read_file_bytes(fixture_dir() + "/model.safetensors");
    write_text(dir + "/model.safetensors", bytes.substr(0, bytes.size() - 1000));
    fs::copy_file(fixture_dir() + "/config.json", dir + "/config.json");
    nn::HfGpt2Config hf = nn::read_hf_gpt2_config(dir);
    expect_invalid_argument([&] { imported_model(hf); }, {dir + "/model.safetensors", "truncated"});
    write_text(dir + "/model.safetensors", bytes.substr(0, 5));
    expect_invalid_argument([&] { imported_model(hf); }, {"5 bytes", "fewer than the 8-byte header length"});
}

// Import, export, re-import: the same tensors bit for bit, the same file keys and bytes as the
// fixture, and a config.json with GPT-2's fields. With MINIPIPE_HF_EXPORT set the export goes there
// (make_hf_gpt2_fixture.py --check-export loads it with transformers).
TEST(HfGpt2, ExportRoundTrip) {
    nn::HfGpt2Config hf = nn::read_hf_gpt2_config(fixture_dir());
    auto model = imported_model(hf);
    const char* requested = std::getenv("MINIPIPE_HF_EXPORT");
    const std::string dir = requested ? std::string(requested) : mp::testing::fresh_temp_dir("hf_gpt2_export");
    nn::export_hf_gpt2(dir, model->named_parameters(), hf.gpt);

    auto again = imported_model(nn::read_hf_gpt2_config(dir));
    auto a = again->named_parameters(), b = model->named_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) mp::testing::expect_equal(a[i].second, b[i].second, a[i].first);

    nn::SafetensorsContents original = nn::read_safetensors(hf.weights_path);
    nn::SafetensorsContents exported = nn::read_safetensors(dir + "/model.safetensors");
    EXPECT_EQ(exported.metadata.at("format"), "pt");
    ASSERT_EQ(exported.tensors.size(), original.tensors.size());
    for (const auto& [key, tensor] : original.tensors) {
        ASSERT_TRUE(exported.tensors.count(key)) << key;
        mp::testing::expect_equal(exported.tensors.at(key), tensor, key);
    }
    std::ifstream in(dir + "/config.json");
    json config = json::parse(in);
    EXPECT_EQ(config.at("model_type"), "gpt2");
    EXPECT_EQ(config.at("architectures"), json({"GPT2LMHeadModel"}));
    EXPECT_EQ(config.at("activation_function"), "gelu_new");
    EXPECT_EQ(config.at("n_layer"), 2);
    EXPECT_EQ(config.at("n_head"), 4);
    EXPECT_EQ(config.at("n_embd"), 64);
    EXPECT_EQ(config.at("vocab_size"), 96);
    EXPECT_EQ(config.at("n_positions"), 32);
    EXPECT_EQ(config.at("layer_norm_epsilon"), 1e-5);
    EXPECT_EQ(config.at("tie_word_embeddings"), true);

    // An untied GPT is not a GPT-2: refused, naming the key to set.
    nn::GPTConfig untied = hf.gpt;
    untied.tie_embeddings = false;
    expect_invalid_argument([&] { nn::export_hf_gpt2(mp::testing::fresh_temp_dir("hf_gpt2_untied_export"), nn::gpt(untied)->named_parameters(),
                                                     untied); },
                            {"model.tie_embeddings"});
}

// A padded vocabulary (GPTConfig::padded_vocab, 96 -> 128 here): GPT-2's rows load into the first 96
// rows of the tied table and the rest stay zero; the logits on the real vocabulary are the
// unpadded model's (the same dot products; 1e-6 for a BLAS that blocks the wider product
// differently), the padded columns are exactly 0, the loss over the real vocabulary is the same;
// the export writes GPT-2's 96 rows, bit for bit the original file.
TEST(HfGpt2, PaddedVocabularyImportsAndExportsGpt2sRows) {
    nn::HfGpt2Config hf = nn::read_hf_gpt2_config(fixture_dir());
    auto plain = imported_model(hf);
    nn::GPTConfig config = hf.gpt;
    config.padded_vocab = 128;
    auto padded = nn::gpt(config);
    nn::load_hf_gpt2(hf, *padded);
    const Tensor wte = padded->named_parameters().front().second;
    ASSERT_EQ(wte.shape(), (Shape{128, 64}));
    const std::vector<float> rows = wte.to_vector<float>();
    for (size_t i = 96 * 64; i < rows.size(); ++i) ASSERT_EQ(rows[i], 0.0f) << i;

    const Tensor ids = mp::testing::random_ids({2, 9}, 96, 3), targets = mp::testing::random_ids({2, 9}, 96, 4);
    const Tensor small = plain->forward(ids), wide = padded->forward(ids);
    ASSERT_EQ(wide.shape(), (Shape{2, 9, 128}));
    const std::vector<float> s = small.to_vector<float>(), w = wide.to_vector<float>();
    for (size_t r = 0; r < 18; ++r)
        for (size_t v = 0; v < 128; ++v) {
            if (v < 96) ASSERT_NEAR(w[r * 128 + v], s[r * 96 + v], 1e-6 * (1 + std::fabs(s[r * 96 + v])));
            else ASSERT_EQ(w[r * 128 + v], 0.0f);
        }
    EXPECT_NEAR(fn::cross_entropy(wide, targets, -100, 96).item(), fn::cross_entropy(small, targets).item(), 1e-6);

    const std::string dir = mp::testing::fresh_temp_dir("hf_gpt2_padded_export");
    nn::export_hf_gpt2(dir, padded->named_parameters(), config);
    nn::SafetensorsContents original = nn::read_safetensors(hf.weights_path);
    nn::SafetensorsContents exported = nn::read_safetensors(dir + "/model.safetensors");
    for (const auto& [key, tensor] : original.tensors) mp::testing::expect_equal(exported.tensors.at(key), tensor, key);
}
