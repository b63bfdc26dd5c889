// The training configuration: defaults, round trip through to_json, overrides of every type,
// and each rejection (unknown / duplicate keys, wrong types, bad values, the cross-key rules,
// malformed JSON with its line) checked by the fragments of its message; --help against the table.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "nn/models.h"
#include "pipeline/schedule.h"
#include "tests/support/test_util.h"
#include "train/build.h"
#include "train/config.h"
#include "train/config_rules.h"

using namespace mp::train;
using mp::config::KeySpec;
using mp::config::KeyType;
using mp::config::key_type_name;
using mp::pipeline::PartitionMethod;
using mp::pipeline::Rematerialization;
using mp::pipeline::schedule_kinds;
using mp::pipeline::schedule_registry;
using mp::pipeline::ScheduleInfo;
using mp::testing::expect_invalid_argument;
using nlohmann::json;

namespace {

TrainConfig parse(const std::string& text, const std::vector<std::string>& overrides = {}, int world_size = 1) {
    return parse_config_text(text, "run.json", overrides, world_size);
}

void expect_rejected(const std::string& text, const std::vector<std::string>& fragments,
                     const std::vector<std::string>& overrides = {}, int world_size = 1) {
    SCOPED_TRACE(text);
    expect_invalid_argument([&] { parse(text, overrides, world_size); }, fragments);
}

const char* kFullConfig = R"({
  "train_batch_size": 32,
  "micro_batch_size": 2,
  "micro_batches": 8,
  "model": {"kind": "gpt", "vocab": 512, "context": 32, "layers": 5, "heads": 2, "channels": 48, "dropout": 0.1},
  "optimizer": {"type": "adamw", "lr": 0.0006, "beta1": 0.85, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.1},
  "lr_schedule": {"kind": "constant", "warmup_steps": 7, "min_lr": 0.00006},
  "grad_clip": 0.5,
  "precision": "tf32",
  "pipeline": {"stages": 2, "partition": "balance", "balance": [4, 3],
               "schedule": "gpipe", "rematerialization": "except_last"},
  "comm": {"backend": "mpi", "timeout_s": 30},
  "steps": 12,
  "seed": 7,
  "data": {"kind": "text", "path": "corpus.txt"},
  "device": "cpu",
  "log": {"every": 3, "memory": true},
  "trace": {"path": "trace.json", "svg": "timeline.svg"},
  "checkpoint": {"dir": "ckpt", "every": 6, "resume": true},
  "summary": {"path": "summary.json"}
})";

// "pipeline.stages" -> /pipeline/stages
json::json_pointer pointer_of(std::string path) {
    std::replace(path.begin(), path.end(), '.', '/');
    return json::json_pointer("/" + path);
}

}  // namespace

TEST(Config, DefaultsFillIn) {
    TrainConfig c = parse("{}");
    EXPECT_EQ(c.micro_batch_size, 4);
    EXPECT_EQ(c.micro_batches, 4);
    EXPECT_EQ(c.train_batch_size, 16);  // 0 in the table: resolved to 4 × 4 × 1
    EXPECT_EQ(c.model.kind, ModelKind::Gpt);
    EXPECT_EQ(c.model.widths, (std::vector<int64_t>{64, 128, 128, 10}));
    EXPECT_EQ(c.optimizer.type, OptimizerKind::AdamW);
    EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-3);
    EXPECT_EQ(c.lr_schedule.kind, LrScheduleKind::Cosine);
    EXPECT_EQ(c.precision, Precision::Fp32);
    EXPECT_EQ(c.pipeline.stages, 1);
    EXPECT_EQ(c.pipeline.partition, PartitionMethod::Uniform);
    EXPECT_TRUE(c.pipeline.balance.empty());
    EXPECT_EQ(c.pipeline.schedule, "1f1b");
    EXPECT_EQ(c.pipeline.rematerialization, Rematerialization::Never);
    EXPECT_EQ(c.comm.backend, mp::comm::Backend::Auto);
    EXPECT_DOUBLE_EQ(c.comm.timeout_s, 300.0);
    EXPECT_EQ(c.data.kind, DataKind::Synthetic);
    EXPECT_EQ(c.device, DeviceChoice::Auto);
    EXPECT_FALSE(c.log.memory);
    EXPECT_EQ(c.trace.path, "");
    EXPECT_EQ(c.checkpoint.every, 0);
    EXPECT_FALSE(c.checkpoint.resume);

    // Every field equals its table default (train_batch_size and virtual_stages aside: they are
    // resolved, the latter to the schedule's own).
    EXPECT_EQ(c.pipeline.virtual_stages, 1);
    json resolved = to_json(c);
    for (const KeySpec& key : config_keys()) {
        if (key.path == "train_batch_size" || key.path == "pipeline.virtual_stages") continue;
        EXPECT_EQ(resolved.at(pointer_of(key.path)), key.default_value) << key.path;
    }
    // A partial section keeps the defaults of its other keys.
    TrainConfig partial = parse(R"({"pipeline": {"schedule": "naive"}})");
    EXPECT_EQ(partial.pipeline.schedule, "naive");
    EXPECT_EQ(partial.pipeline.partition, PartitionMethod::Uniform);
}

TEST(Config, FullConfigIsReadAndRoundTrips) {
    TrainConfig c = parse(kFullConfig, {}, 4);
    EXPECT_EQ(c.train_batch_size, 32);
    EXPECT_EQ(c.model.layers, 5);
    EXPECT_DOUBLE_EQ(c.model.dropout, 0.1);
    EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-6);
    EXPECT_DOUBLE_EQ(c.comm.timeout_s, 30.0);  // an int where a float is expected is accepted
    EXPECT_EQ(c.pipeline.balance, (std::vector<int64_t>{4, 3}));
    EXPECT_EQ(c.pipeline.rematerialization, Rematerialization::ExceptLast);
    EXPECT_EQ(c.data.path, "corpus.txt");
    EXPECT_TRUE(c.log.memory);
    EXPECT_EQ(c.trace.svg, "timeline.svg");
    EXPECT_TRUE(c.checkpoint.resume);
    EXPECT_EQ(c.summary.path, "summary.json");
    EXPECT_EQ(data_parallel_size(c, 4), 2);
    EXPECT_EQ(model_layer_count(c), 5 + 2);

    json first = to_json(c);
    TrainConfig again = parse(first.dump(2), {}, 4);
    EXPECT_EQ(to_json(again), first);
    // The defaults round-trip too (train_batch_size comes back resolved and consistent).
    json defaults = to_json(parse("{}"));
    EXPECT_EQ(to_json(parse(defaults.dump())), defaults);
}

TEST(Config, ToJsonNestsByPath) {
    json j = to_json(parse(kFullConfig, {}, 4));
    EXPECT_EQ(j["pipeline"]["schedule"], "gpipe");
    EXPECT_EQ(j["model"]["channels"], 48);
    EXPECT_EQ(j["checkpoint"]["every"], 6);
    EXPECT_EQ(j["grad_clip"], 0.5);
    EXPECT_EQ(j.size(), 20u);  // the top-level keys and sections (eval and export included), nothing else
}

TEST(Config, OverridesOfEveryType) {
    TrainConfig c = parse("{}", {"pipeline.stages=2",              // int
                                 "optimizer.lr=3e-4",              // float
                                 "lr_schedule.min_lr=0",           // float written as an int
                                 "log.memory=true",                // bool
                                 "pipeline.schedule=gpipe",        // string
                                 "trace.path=\"out/trace.json\"",  // quoted string
                                 "model.kind=mlp",
                                 "model.widths=[8, 16,16,4]",      // int list in brackets: 5 layers
                                 "pipeline.partition=balance",
                                 "pipeline.balance=3,2"},          // bare int list
                  2);
    EXPECT_EQ(c.pipeline.stages, 2);
    EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-4);
    EXPECT_DOUBLE_EQ(c.lr_schedule.min_lr, 0.0);
    EXPECT_TRUE(c.log.memory);
    EXPECT_EQ(c.pipeline.schedule, "gpipe");
    EXPECT_EQ(c.trace.path, "out/trace.json");
    EXPECT_EQ(c.model.widths, (std::vector<int64_t>{8, 16, 16, 4}));
    EXPECT_EQ(model_layer_count(c), 2 * 4 - 3);
    EXPECT_EQ(c.pipeline.balance, (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(c.train_batch_size, 4 * 4 * 1);  // 2 ranks, 2 stages: data-parallel size 1

    // Overrides beat the file and later overrides beat earlier ones; "[]" empties a list.
    TrainConfig d = parse(kFullConfig,
                          {"pipeline.schedule=1f1b", "log.memory=false", "steps=5", "steps=9",
                           "pipeline.partition=uniform", "pipeline.balance=[]"},
                          4);
    EXPECT_EQ(d.pipeline.schedule, "1f1b");
    EXPECT_FALSE(d.log.memory);
    EXPECT_EQ(d.steps, 9);
    EXPECT_TRUE(d.pipeline.balance.empty());
}

TEST(Config, BadOverrides) {
    expect_rejected("{}", {"--set pipeline.shedule=gpipe", "unknown key pipeline.shedule",
                           "did you mean pipeline.schedule?"},
                    {"pipeline.shedule=gpipe"});
    expect_rejected("{}", {"--set pipeline.stages", "expected key.path=value"}, {"pipeline.stages"});
    expect_rejected("{}", {"--set pipeline=4", "pipeline is a section"}, {"pipeline=4"});
    expect_rejected("{}", {"pipeline.stages: expected int, got \"four\""}, {"pipeline.stages=four"});
    expect_rejected("{}", {"pipeline.stages: expected int, got \"2.5\""}, {"pipeline.stages=2.5"});
    expect_rejected("{}", {"optimizer.lr: expected float, got \"fast\""}, {"optimizer.lr=fast"});
    expect_rejected("{}", {"log.memory: expected bool, got \"yes\""}, {"log.memory=yes"});
    expect_rejected("{}", {"model.widths: expected int list, got \"[8,x]\""}, {"model.widths=[8,x]"});
    expect_rejected("{}", {"model.widths: expected int list, got \"8,16,\""}, {"model.widths=8,16,"});
    // Overrides go through the same value checks as the file.
    expect_rejected("{}", {"--set pipeline.schedule=zigzag", "pipeline.schedule: \"zigzag\" is not one of",
                           "naive | gpipe | 1f1b"},
                    {"pipeline.schedule=zigzag"});
    expect_rejected("{}", {"--set steps=0", "steps must be > 0, got 0"}, {"steps=0"});
}

TEST(Config, UnknownKeysNameThePathAndSuggest) {
    expect_rejected(R"({"pipeline": {"shedule": "gpipe"}})",
                    {"run.json", "unknown key pipeline.shedule", "did you mean pipeline.schedule?"});
    expect_rejected(R"({"micro_batch": 4})", {"unknown key micro_batch", "did you mean micro_batches?"});
    expect_rejected(R"({"optimiser": {"lr": 1}})", {"unknown key optimiser", "did you mean optimizer?"});
    // Nothing close: no suggestion, just the pointer to --help.
    std::string message;
    try {
        parse(R"({"zebra_crossing_width": 3})");
    } catch (const std::invalid_argument& e) {
        message = e.what();
    }
    EXPECT_NE(message.find("unknown key zebra_crossing_width"), std::string::npos) << message;
    EXPECT_EQ(message.find("did you mean"), std::string::npos) << message;
    // Dotted keys inside the file are not a second spelling of nesting.
    expect_rejected(R"({"pipeline.stages": 2})", {"pipeline.stages", "nested objects"});
}

TEST(Config, DuplicateKeysAreRejected) {
    expect_rejected(R"({"steps": 10, "steps": 20})", {"run.json", "duplicate key steps"});
    expect_rejected(R"({"pipeline": {"stages": 2, "schedule": "gpipe", "stages": 4}})",
                    {"duplicate key pipeline.stages"});
    // The same key name in different objects is fine.
    TrainConfig c = parse(R"({"trace": {"path": "t.json"}, "summary": {"path": "s.json"}})");
    EXPECT_EQ(c.trace.path, "t.json");
    EXPECT_EQ(c.summary.path, "s.json");
    // A duplicate after an array still gets its full path.
    expect_rejected(R"({"model": {"widths": [1, 2], "kind": "mlp", "widths": [3, 4]}})",
                    {"duplicate key model.widths"});
}

TEST(Config, WrongTypesNameThePath) {
    expect_rejected(R"({"pipeline": {"stages": "4"}})", {"run.json", "pipeline.stages: expected int, got string \"4\""});
    expect_rejected(R"({"steps": 2.5})", {"steps: expected int, got float 2.5"});
    expect_rejected(R"({"optimizer": {"lr": "0.1"}})", {"optimizer.lr: expected float, got string \"0.1\""});
    expect_rejected(R"({"log": {"memory": 1}})", {"log.memory: expected bool, got int 1"});
    expect_rejected(R"({"model": {"kind": 3}})", {"model.kind: expected string, got int 3"});
    expect_rejected(R"({"pipeline": {"balance": [4, "3"]}})",
                    {"pipeline.balance: expected int list, got list [4,\"3\"]"});
    expect_rejected(R"({"pipeline": {"balance": 4}})", {"pipeline.balance: expected int list, got int 4"});
    expect_rejected(R"({"pipeline": 4})", {"pipeline: expected object, got int 4"});
    expect_rejected(R"({"steps": null})", {"steps: expected int, got null"});
    expect_rejected(R"({"steps": 18446744073709551615})", {"steps: expected int"});
    expect_rejected(R"([1, 2])", {"run.json", "must be a JSON object, got list [1,2]"});
}

TEST(Config, EnumeratedValues) {
    expect_rejected(R"({"pipeline": {"schedule": "interleaved"}})",
                    {"pipeline.schedule: \"interleaved\" is not one of naive | gpipe | 1f1b"});
    expect_rejected(R"({"pipeline": {"partition": "greedy"}})",
                    {"pipeline.partition", "uniform | parameters | time | balance"});
    expect_rejected(R"({"pipeline": {"rematerialization": "sometimes"}})",
                    {"pipeline.rematerialization", "never | always | except_last"});
    expect_rejected(R"({"model": {"kind": "cnn"}})", {"model.kind", "gpt | mlp | realistic"});
    expect_rejected(R"({"optimizer": {"type": "adam"}})", {"optimizer.type", "adamw | sgd"});
    expect_rejected(R"({"lr_schedule": {"kind": "linear"}})", {"lr_schedule.kind", "cosine | constant"});
    expect_rejected(R"({"precision": "fp16"})", {"precision", "fp32 | tf32 | bf16"});
    EXPECT_EQ(parse(R"({"precision": "bf16"})").precision, Precision::Bf16);
    expect_rejected(R"({"precision": "bf16", "model": {"kind": "mlp"}, "data": {"kind": "synthetic"}})",
                    {"precision bf16 needs a model whose input is token ids", "mlp"});
    expect_rejected(R"({"comm": {"backend": "gloo"}})", {"comm.backend", "auto | nccl | mpi"});
    expect_rejected(R"({"data": {"kind": "images"}})", {"data.kind", "synthetic | text | shard"});
    expect_rejected(R"({"device": "tpu"})", {"device", "auto | cpu | cuda"});
}

// The choices of an enumerated key are its enum's name table (the schedule's: the registry), and
// every name reads back as the value that prints as it.
TEST(Config, ChoicesAreTheEnumNameTables) {
    auto choices_of = [](const std::string& path) {
        for (const KeySpec& key : config_keys())
            if (key.path == path) return key.choices;
        ADD_FAILURE() << "no key " << path;
        return std::vector<std::string>{};
    };
    EXPECT_EQ(choices_of("pipeline.schedule"), schedule_kinds());
    EXPECT_EQ(choices_of("model.kind"), enum_names(ModelKind{}).names());
    EXPECT_EQ(choices_of("optimizer.type"), enum_names(OptimizerKind{}).names());
    EXPECT_EQ(choices_of("lr_schedule.kind"), enum_names(LrScheduleKind{}).names());
    EXPECT_EQ(choices_of("precision"), enum_names(Precision{}).names());
    EXPECT_EQ(choices_of("pipeline.partition"), enum_names(PartitionMethod{}).names());
    EXPECT_EQ(choices_of("pipeline.rematerialization"), enum_names(Rematerialization{}).names());
    EXPECT_EQ(choices_of("comm.backend"), enum_names(mp::comm::Backend{}).names());
    EXPECT_EQ(choices_of("data.kind"), enum_names(DataKind{}).names());
    EXPECT_EQ(choices_of("device"), enum_names(DeviceChoice{}).names());
    for (const std::string& name : choices_of("pipeline.partition"))
        EXPECT_EQ(mp::name_of(mp::parse_enum<PartitionMethod>(name, "partition")), name);
    for (const std::string& name : choices_of("comm.backend"))
        EXPECT_EQ(mp::name_of(mp::parse_enum<mp::comm::Backend>(name, "backend")), name);
    // A config echoes (and a summary records) the names, not the enum values.
    const json echoed = to_json(parse(kFullConfig, {}, 4));
    EXPECT_EQ(echoed["pipeline"]["rematerialization"], "except_last");
    EXPECT_EQ(echoed["lr_schedule"]["kind"], "constant");
    EXPECT_EQ(echoed["comm"]["backend"], "mpi");
    EXPECT_EQ(echoed["device"], "cpu");
    // The generic parse error names the value and every choice.
    expect_invalid_argument([] { mp::parse_enum<DataKind>("images", "data.kind"); },
                            {"data.kind: \"images\" is not one of synthetic | text | shard"});
}

TEST(Config, Bounds) {
    expect_rejected(R"({"micro_batches": 0})", {"micro_batches must be > 0, got 0"});
    expect_rejected(R"({"micro_batch_size": -2})", {"micro_batch_size must be > 0, got -2"});
    expect_rejected(R"({"pipeline": {"stages": 0}})", {"pipeline.stages must be > 0, got 0"});
    expect_rejected(R"({"optimizer": {"lr": 0}})", {"optimizer.lr must be > 0, got 0"});
    expect_rejected(R"({"optimizer": {"beta2": 1.0}})", {"optimizer.beta2 must be in [0, 1), got 1.0"});
    expect_rejected(R"({"model": {"dropout": -0.1}})", {"model.dropout must be in [0, 1), got -0.1"});
    expect_rejected(R"({"grad_clip": -1})", {"grad_clip must be >= 0, got -1"});
    expect_rejected(R"({"comm": {"timeout_s": 0}})", {"comm.timeout_s must be in (0, 3.1536e+08]", "got 0"});
    // Ten billion seconds would overflow the deadline's clock into the past: refused, not aborted on.
    expect_rejected(R"({"comm": {"timeout_s": 1e10}})", {"comm.timeout_s must be in (0, 3.1536e+08]"});
    expect_rejected(R"({"pipeline": {"partition": "balance", "balance": [4, 0]}})",
                    {"pipeline.balance[1] must be > 0, got 0"});
    expect_rejected(R"({"model": {"kind": "mlp", "widths": [8, -1]}})", {"model.widths[1] must be in (0, 1.67772e+07], got -1"});
    // Zero is allowed where the bound says >= 0.
    EXPECT_EQ(parse(R"({"checkpoint": {"every": 0}, "grad_clip": 0, "seed": 0})").seed, 0);
}

TEST(Config, BatchArithmeticPrintsAllFourNumbers) {
    // 4 ranks, 2 stages: data-parallel size 2; 3 × 5 × 2 = 30, not 32.
    expect_rejected(R"({"train_batch_size": 32, "micro_batch_size": 3, "micro_batches": 5, "pipeline": {"stages": 2}})",
                    {"run.json", "train_batch_size 32", "micro_batch_size 3", "micro_batches 5",
                     "data-parallel size 2", "= 30", "world size 4", "pipeline.stages 2"},
                    {}, 4);
    TrainConfig ok = parse(R"({"train_batch_size": 30, "micro_batch_size": 3, "micro_batches": 5, "pipeline": {"stages": 2}})",
                           {}, 4);
    EXPECT_EQ(ok.train_batch_size, 30);
    // Left at 0 it is resolved from the other three.
    EXPECT_EQ(parse(R"({"micro_batch_size": 3, "micro_batches": 5})", {}, 6).train_batch_size, 3 * 5 * 6);
    // A mismatch introduced by an override says so.
    expect_rejected(R"({"train_batch_size": 16})", {"with 1 --set override", "micro_batches 8"}, {"micro_batches=8"});
}

TEST(Config, StagesMustDivideTheWorldSize) {
    expect_rejected(R"({"pipeline": {"stages": 4}})", {"world size 6", "not divisible by pipeline.stages 4"}, {}, 6);
    expect_rejected("{}", {"world size must be >= 1, got 0"}, {}, 0);
    TrainConfig c = parse(R"({"pipeline": {"stages": 3}})", {}, 6);
    EXPECT_EQ(data_parallel_size(c, 6), 2);
    expect_invalid_argument([&] { data_parallel_size(c, 4); }, {"world size 4", "pipeline.stages 3"});
}

TEST(Config, BalanceList) {
    // gpt with 4 blocks has 4 + 2 = 6 layers: the embedding, the blocks, the final LayerNorm with the head.
    expect_rejected(R"({"pipeline": {"stages": 2, "partition": "balance", "balance": [4, 2, 1]}})",
                    {"pipeline.balance [4,2,1] has 3 entries but pipeline.stages is 2"}, {}, 2);
    expect_rejected(R"({"pipeline": {"stages": 2, "partition": "balance", "balance": [4, 4]}})",
                    {"pipeline.balance [4,4] sums to 8", "gpt model has 6 layers"}, {}, 2);
    expect_rejected(R"({"pipeline": {"stages": 2, "partition": "balance"}})",
                    {"pipeline.balance [] has 0 entries but pipeline.stages is 2"}, {}, 2);
    expect_rejected(R"({"pipeline": {"balance": [7]}})", {"pipeline.balance [7] is set", "\"uniform\""});
    EXPECT_EQ(parse(R"({"pipeline": {"stages": 2, "partition": "balance", "balance": [4, 2]}})", {}, 2)
                  .pipeline.balance,
              (std::vector<int64_t>{4, 2}));
    // The layer count of each model kind.
    // GPT-2's 12 blocks are the lesson's 14 layers, so its balance [4, 3, 3, 4] means the same here.
    EXPECT_EQ(model_layer_count(parse(R"({"model": {"kind": "gpt", "layers": 12}})")), 14);
    EXPECT_EQ(parse(R"({"model": {"kind": "gpt", "layers": 12},
                        "pipeline": {"stages": 4, "partition": "balance", "balance": [4, 3, 3, 4]}})", {}, 4)
                  .pipeline.balance,
              (std::vector<int64_t>{4, 3, 3, 4}));
    EXPECT_EQ(model_layer_count(parse(R"({"model": {"kind": "mlp", "widths": [8, 8, 8, 8, 2]}})")), 7);
    EXPECT_EQ(model_layer_count(parse(R"({"model": {"kind": "realistic", "blocks": 6}})")), 8);
    expect_rejected(R"({"model": {"kind": "realistic", "blocks": 6},
                        "pipeline": {"stages": 2, "partition": "balance", "balance": [4, 3]}})",
                    {"sums to 7", "realistic model has 8 layers"}, {}, 2);
    // More stages than layers.
    expect_rejected(R"({"model": {"kind": "mlp", "widths": [8, 2]}, "pipeline": {"stages": 2}})",
                    {"pipeline.stages 2 exceeds the 1 layers of the mlp model"}, {}, 2);
}

TEST(Config, OtherCrossKeyRules) {
    expect_rejected(R"({"data": {"kind": "text"}})", {"data.path is required", "\"text\""});
    expect_rejected(R"({"data": {"kind": "shard"}})", {"data.path is required", "\"shard\""});
    EXPECT_EQ(parse(R"({"data": {"kind": "shard", "path": "tokens.bin"}})").data.path, "tokens.bin");
    expect_rejected(R"({"model": {"channels": 100, "heads": 3}})",
                    {"model.channels 100 is not divisible by model.heads 3"});
    expect_rejected(R"({"model": {"kind": "mlp", "widths": [8]}})", {"model.widths [8]", "at least two"});
    expect_rejected(R"({"optimizer": {"lr": 0.001}, "lr_schedule": {"min_lr": 0.01}})",
                    {"lr_schedule.min_lr 0.01 exceeds optimizer.lr 0.001"});
    expect_rejected(R"({"checkpoint": {"every": 10}})", {"checkpoint.dir is required", "checkpoint.every is 10"});
    expect_rejected(R"({"checkpoint": {"resume": true}})", {"checkpoint.dir is required", "resume is true"});
}

// Validation data and the vocabulary file: read like data.path, so only for text and shard data;
// eval.every needs validation data and is never negative.
TEST(Config, ValidationAndVocabularyKeys) {
    const TrainConfig plain = parse("{}");
    EXPECT_EQ(plain.data.val_path, "");
    EXPECT_EQ(plain.eval.every, 0);
    EXPECT_EQ(plain.eval.batches, 4);
    const TrainConfig shard = parse(R"({"data": {"kind": "shard", "path": "t.bin", "val_path": "v.bin",
                                       "vocab_path": "tok.bin"}, "eval": {"every": 20, "batches": 2}})");
    EXPECT_EQ(shard.data.val_path, "v.bin");
    EXPECT_EQ(shard.data.vocab_path, "tok.bin");
    EXPECT_EQ(shard.eval.every, 20);
    EXPECT_EQ(shard.eval.batches, 2);
    EXPECT_EQ(parse(R"({"data": {"kind": "text", "path": "a.txt", "val_path": "b.txt"}})").data.val_path, "b.txt");
    expect_rejected(R"({"data": {"val_path": "v.bin"}})", {"data.val_path 'v.bin'", "text or shard", "\"synthetic\""});
    expect_rejected(R"({"data": {"kind": "text", "path": "t.txt"}, "eval": {"accuracy": 20}})",
                    {"eval.accuracy is 20", "synthetic additions only", "data.kind is \"text\""});
    expect_rejected(R"({"data": {"digits": 10}})", {"data.digits"});
    expect_rejected(R"({"data": {"kind": "shard", "path": "t.bin"}, "eval": {"every": 5}})",
                    {"eval.every is 5", "set data.val_path"});
    expect_rejected(R"({"data": {"kind": "text", "path": "a.txt", "vocab_path": "tok.bin"}})",
                    {"data.vocab_path 'tok.bin'", "data.kind is \"text\""});
    expect_rejected(R"({"eval": {"every": -1}})", {"eval.every", "-1"});
    expect_rejected(R"({"eval": {"batches": 0}})", {"eval.batches", "0"});
    expect_rejected("{}", {"eval.every", "-3"}, {"eval.every=-3"});
}

TEST(Config, MalformedJsonNamesTheFileAndLine) {
    std::string text = "{\n  \"steps\": 10,\n  \"seed\": ,\n  \"device\": \"cpu\"\n}\n";
    expect_rejected(text, {"run.json:3:", "invalid JSON"});
    expect_rejected("{\n  \"steps\": 10\n  \"seed\": 1\n}", {"run.json:3:", "invalid JSON"});  // missing comma
    expect_rejected("{\"steps\": 10", {"run.json:1:", "invalid JSON"});
    expect_rejected("", {"run.json:1:", "invalid JSON"});
    // Comments are allowed.
    EXPECT_EQ(parse("{\n  // a short run\n  \"steps\": 3 /* for the test */\n}").steps, 3);
}

TEST(Config, LoadConfigReadsAFile) {
    std::string path = ::testing::TempDir() + "minipipe_config_test.json";
    {
        std::ofstream out(path);
        out << "{\n  \"pipeline\": {\"stages\": 2},\n  \"steps\": 7\n}\n";
    }
    TrainConfig c = load_config(path, {"pipeline.schedule=gpipe"}, 2);
    EXPECT_EQ(c.steps, 7);
    EXPECT_EQ(c.pipeline.schedule, "gpipe");
    {
        std::ofstream out(path);
        out << "{\n  \"pipeline\": {\"stages\": 2},\n  \"steps\": 7,\n}\n";  // trailing comma
    }
    expect_invalid_argument([&] { load_config(path, {}, 2); }, {path + ":4:", "invalid JSON"});
    std::remove(path.c_str());
    expect_invalid_argument([&] { load_config(path, {}, 2); }, {path, "cannot open"});
}

// Several stages per rank: the schedule's rule from the registry, the layers for K · v stages, a
// balance list per stage; checkpoints allowed.
TEST(Config, VirtualStages) {
    const std::string interleaved = R"({"micro_batches": 4, "model": {"kind": "gpt", "layers": 4},
                                        "pipeline": {"stages": 2, "schedule": "interleaved-1f1b", "virtual_stages": 2}})";
    TrainConfig c = parse(interleaved, {}, 2);
    EXPECT_EQ(c.pipeline.virtual_stages, 2);
    EXPECT_EQ(parse("{}").pipeline.virtual_stages, 1);
    // Left at 0, virtual_stages is the schedule's own: two for interleaved-1f1b and zbv.
    EXPECT_EQ(parse(R"({"micro_batches": 4, "model": {"kind": "gpt", "layers": 4},
                        "pipeline": {"stages": 2, "schedule": "zbv"}})", {}, 2).pipeline.virtual_stages, 2);
    EXPECT_EQ(parse(R"({"micro_batches": 4, "model": {"kind": "gpt", "layers": 4},
                        "pipeline": {"stages": 2, "schedule": "interleaved-1f1b"}})", {}, 2).pipeline.virtual_stages, 2);
    expect_rejected(interleaved, {"pipeline.schedule \"interleaved-1f1b\"", "virtual_stages >= 2", "use 1f1b"},
                    {"pipeline.virtual_stages=1"}, 2);
    expect_rejected(interleaved, {"micro_batches 3", "multiple of the ranks (2), got 3"}, {"micro_batches=3"}, 2);
    expect_rejected(interleaved, {"1f1b runs one stage per rank"}, {"pipeline.schedule=1f1b"}, 2);
    expect_rejected(interleaved, {"pipeline.stages 2 × pipeline.virtual_stages 4 = 8 stages exceed the 6 layers"},
                    {"pipeline.virtual_stages=4"}, 2);
    expect_rejected(interleaved, {"pipeline.balance [4,3] has 2 entries", "= 4 stages"},
                    {"pipeline.partition=balance", "pipeline.balance=4,3"}, 2);
    EXPECT_EQ(parse(interleaved, {"pipeline.partition=balance", "pipeline.balance=1,2,2,1"}, 2).pipeline.balance.size(), 4u);
    EXPECT_EQ(parse(interleaved, {"checkpoint.dir=/tmp/somewhere"}, 2).checkpoint.dir, "/tmp/somewhere");
    expect_rejected("{}", {"pipeline.virtual_stages"}, {"pipeline.virtual_stages=-1"});
}

// --help lists every schedule of the registry with its description, after the keys.
TEST(Config, HelpListsEverySchedule) {
    const std::string help = config_help();
    const size_t section = help.find("\nPipeline schedules (pipeline.schedule):\n");
    ASSERT_NE(section, std::string::npos) << help;
    for (const ScheduleInfo& info : schedule_registry()) {
        const size_t at = help.find("\n  " + info.name + " ", section);
        ASSERT_NE(at, std::string::npos) << info.name;
        EXPECT_NE(help.substr(at, help.find('\n', at + 1) - at).find(info.description), std::string::npos) << info.name;
    }
}

TEST(Config, HelpListsEveryKeyWithTypeAndDefault) {
    std::string help = config_help();
    // One line per key, starting with its path, then its type and default.
    std::set<std::string> listed;
    std::istringstream lines(help);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream fields(line);
        std::string path;
        fields >> path;
        listed.insert(path);
    }
    for (const KeySpec& key : config_keys()) {
        EXPECT_TRUE(listed.count(key.path)) << key.path << " missing from --help";
        std::string type = key_type_name(key.type);
        size_t at = help.find("\n" + key.path + " ");
        ASSERT_NE(at, std::string::npos) << key.path;
        std::string key_line = help.substr(at + 1, help.find('\n', at + 1) - at - 1);
        EXPECT_NE(key_line.find(" " + type + " "), std::string::npos) << key_line;
        EXPECT_NE(key_line.find(" " + key.default_value.dump() + " "), std::string::npos) << key_line;
        for (const std::string& choice : key.choices) EXPECT_NE(key_line.find(choice), std::string::npos) << key_line;
    }
    auto line_of = [&](const std::string& path) {
        size_t at = help.find("\n" + path + " ");
        return at == std::string::npos ? std::string() : help.substr(at + 1, help.find('\n', at + 1) - at - 1);
    };
    EXPECT_NE(line_of("pipeline.schedule").find("string"), std::string::npos);
    EXPECT_NE(line_of("pipeline.schedule").find("\"1f1b\""), std::string::npos);
    EXPECT_NE(line_of("pipeline.schedule").find("naive | gpipe | 1f1b"), std::string::npos);
    EXPECT_NE(line_of("pipeline.balance").find("int list"), std::string::npos);
    EXPECT_NE(line_of("pipeline.balance").find("[]"), std::string::npos);
    EXPECT_NE(line_of("micro_batches").find("(> 0)"), std::string::npos);
    EXPECT_NE(line_of("log.memory").find("false"), std::string::npos);
    EXPECT_NE(help.find("--set"), std::string::npos);
    // The rules' example is the models' own count: GPT-2's 12 blocks are 14 layers.
    EXPECT_NE(help.find("blocks are " + std::to_string(mp::nn::gpt_layer_count(12)) + " layers"), std::string::npos);
}

TEST(Config, TableIsWellFormed) {
    std::set<std::string> paths;
    for (const KeySpec& key : config_keys()) {
        EXPECT_TRUE(paths.insert(key.path).second) << "duplicate table row " << key.path;
        EXPECT_FALSE(key.help.empty()) << key.path;
        EXPECT_TRUE(key.choices.empty() || key.type == KeyType::String) << key.path;
        if (!key.choices.empty()) {
            EXPECT_NE(std::find(key.choices.begin(), key.choices.end(), key.default_value.get<std::string>()),
                      key.choices.end())
                << key.path << ": default not among the choices";
        }
    }
    // No key is also a section ("pipeline" and "pipeline.stages" cannot both be keys).
    for (const std::string& path : paths)
        for (const std::string& other : paths)
            EXPECT_NE(other.rfind(path + ".", 0), 0u) << path << " is both a key and a section of " << other;
}

// MINIPIPE_COMM_TIMEOUT_S: command line > environment > config file > default.
TEST(Config, TimeoutPrecedenceCommandLineEnvironmentFileDefault) {
    const char* file = R"({"comm": {"timeout_s": 10}})";
    unsetenv("MINIPIPE_COMM_TIMEOUT_S");
    EXPECT_DOUBLE_EQ(parse("{}", with_environment_overrides({})).comm.timeout_s, 300.0);
    EXPECT_DOUBLE_EQ(parse(file, with_environment_overrides({})).comm.timeout_s, 10.0);
    setenv("MINIPIPE_COMM_TIMEOUT_S", "20", 1);
    EXPECT_DOUBLE_EQ(parse("{}", with_environment_overrides({})).comm.timeout_s, 20.0);
    EXPECT_DOUBLE_EQ(parse(file, with_environment_overrides({})).comm.timeout_s, 20.0);
    EXPECT_DOUBLE_EQ(parse(file, with_environment_overrides({"comm.timeout_s=30"})).comm.timeout_s, 30.0);
    setenv("MINIPIPE_COMM_TIMEOUT_S", "0.25", 1);
    EXPECT_DOUBLE_EQ(parse(file, with_environment_overrides({})).comm.timeout_s, 0.25);
    for (const char* bad : {"abc", "-3", "0", "1e10", "5s", "nan"}) {
        setenv("MINIPIPE_COMM_TIMEOUT_S", bad, 1);
        expect_invalid_argument([&] { with_environment_overrides({}); },
                                {"MINIPIPE_COMM_TIMEOUT_S='" + std::string(bad) + "'", "expected a number of seconds"});
    }
    setenv("MINIPIPE_COMM_TIMEOUT_S", "", 1);  // empty: unset
    EXPECT_DOUBLE_EQ(parse(file, with_environment_overrides({})).comm.timeout_s, 10.0);
    unsetenv("MINIPIPE_COMM_TIMEOUT_S");
}

// What the ranks compare at start-up: every differing key named with both values.
TEST(Config, DifferencesNameEveryDifferingKeyWithBothValues) {
    TrainConfig a = parse(kFullConfig, {}, 4);
    EXPECT_TRUE(config_differences(a, "a", parse(kFullConfig, {}, 4), "b").empty());
    TrainConfig b = parse(kFullConfig, {"seed=8", "optimizer.lr=0.01", "pipeline.schedule=1f1b"}, 4);
    std::vector<std::string> differences = config_differences(b, "rank 1", a, "rank 0");
    ASSERT_EQ(differences.size(), 3u);
    EXPECT_EQ(differences[0], "optimizer.lr (rank 1: 0.01, rank 0: 0.0006)");
    EXPECT_EQ(differences[1], "pipeline.schedule (rank 1: \"1f1b\", rank 0: \"gpipe\")");
    EXPECT_EQ(differences[2], "seed (rank 1: 8, rank 0: 7)");
}

// Products of user numbers never wrap around into a value that passes the batch identity.
TEST(Config, OverflowingProductsAreRefused) {
    expect_rejected(R"({"micro_batch_size": 4611686018427387905, "micro_batches": 4})",
                    {"micro_batch_size × micro_batches × data-parallel size", "4611686018427387905 × 4",
                     "does not fit in 64 bits"});
    expect_rejected(R"({"micro_batch_size": 3037000500, "micro_batches": 3037000500})", {"does not fit in 64 bits"});
    expect_rejected(R"({"micro_batch_size": 4611686018427387904, "micro_batches": 1, "pipeline": {"stages": 1}})",
                    {"does not fit in 64 bits"}, {}, 2);  // × 2 data-parallel replicas
    // Model sizes are bounded so that parameter counts cannot overflow either.
    expect_rejected(R"({"model": {"channels": 4611686018427387904, "heads": 1}})", {"model.channels must be in (0, 1.67772e+07]"});
    expect_rejected(R"({"model": {"vocab": 4294967296}})", {"model.vocab must be in (0, 2.14748e+09]"});
    expect_rejected(R"({"model": {"kind": "mlp", "widths": [4, 99999999999, 4]}})", {"model.widths[1] must be in (0, 1.67772e+07]"});
    expect_rejected(R"({"model": {"kind": "mlp", "widths": [4, 8, 4]},
                        "pipeline": {"stages": 2, "partition": "balance", "balance": [9223372036854775807, 5]}})",
                    {"pipeline.balance", "does not fit in 64 bits"}, {}, 2);
}

// Deeply nested JSON is refused while parsing, numbers beyond double are named, and a long value
// is quoted in part, not copied whole into the message.
TEST(Config, NestingOutOfRangeNumbersAndLongValues) {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    expect_rejected(deep, {"run.json", "nested deeper than 32 levels"});
    expect_rejected(R"({"seed": )" + deep + "}", {"run.json", "nested deeper than 32 levels", "seed[0]"});
    expect_rejected(R"({"optimizer": {"lr": 1e999}})", {"run.json", "a number is out of range", "1e999"});
    try {
        parse(R"({"seed": ")" + std::string(100000, 'x') + R"("})");
        ADD_FAILURE() << "a string seed was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_LT(std::string(e.what()).size(), 300u);
        EXPECT_NE(std::string(e.what()).find("(100002 characters)"), std::string::npos) << e.what();
    }
}

TEST(Config, ADirectoryIsNotAConfigFile) {
    const std::string dir = ::testing::TempDir();
    expect_invalid_argument([&] { load_config(dir, {}, 1); }, {dir, "is a directory, not a configuration file"});
}

TEST(Config, NulBytesAndMlpWithOtherDataAreRefused) {
    expect_rejected(std::string("{\"steps\": 3}\0{\"steps\": \"bogus\"", 28), {"run.json", "a NUL byte at offset 12"});
    expect_rejected(R"({"model": {"kind": "mlp"}, "data": {"kind": "text", "path": "corpus.txt"}})",
                    {"model.kind mlp trains on its own synthetic regression task", "data.kind = synthetic"});
}

// model.init_from: the sizes are the Hugging Face checkpoint's (its config.json); a size also given
// must agree; it needs a tied GPT; export.hf too.
TEST(Config, InitFromTakesTheCheckpointSizes) {
    const std::string fixture = std::string(MP_SOURCE_DIR) + "/tests/fixtures/hf_gpt2_tiny";
    const std::string init = R"({"model": {"tie_embeddings": true, "init_from": ")" + fixture + R"("}})";
    TrainConfig c = parse(init);
    EXPECT_EQ(c.model.layers, 2);
    EXPECT_EQ(c.model.heads, 4);
    EXPECT_EQ(c.model.channels, 64);
    EXPECT_EQ(c.model.vocab, 96);
    EXPECT_EQ(c.model.context, 32);
    EXPECT_DOUBLE_EQ(c.model.layer_norm_eps, 1e-5);
    EXPECT_EQ(model_layer_count(c), 4);
    EXPECT_EQ(to_json(parse(to_json(c).dump())), to_json(c));  // the resolved sizes agree with the file
    EXPECT_EQ(parse(init, {"model.layers=2"}).model.layers, 2);
    expect_rejected(init, {"model.layers is 3", "n_layer 2", "config.json"}, {"model.layers=3"});
    expect_rejected(init, {"model.layer_norm_eps is 1e-06", "layer_norm_epsilon 1e-05"}, {"model.layer_norm_eps=1e-6"});
    expect_rejected(init, {"set model.tie_embeddings = true"}, {"model.tie_embeddings=false"});
    expect_rejected(init, {"model.kind is \"mlp\""}, {"model.kind=mlp"});
    expect_rejected(init, {"model.init_from '/nonexistent'", "does not exist"}, {"model.init_from=/nonexistent"});
    expect_rejected("{}", {"export.hf", "model.tie_embeddings true (is false)"}, {"export.hf=out"});
    EXPECT_EQ(parse(init, {"export.hf=out"}).exports.hf, "out");
}
