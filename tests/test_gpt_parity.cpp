// Whole-model parity with PyTorch: tests/fixtures/make_gpt_fixture.py builds the same small GPT
// in PyTorch (float64) and commits its weights, a batch, the logits, the loss, every gradient
// and the losses of 5 AdamW steps to tests/fixtures/gpt_small.json. Here minipipe loads those
// weights and must agree on the CPU, and on CUDA against the same fixture.
//
// Tolerances (float32 against a float64 reference): the longest sums are 64-term GEMM dots and
// 37-term softmax rows, each within ~64·ε ≈ 4e-6 relative of exact; about ten such stages are
// chained through forward and backward, so ~4e-5 relative is the worst case — rtol 1e-4, with
// atol 1e-6 for entries that are near zero (an absolute error of ~1e-7 on 0.02-scale weights).
// AdamW divides by √v̂, amplifying gradient differences on near-zero gradients, so its losses
// are compared at 1e-4 relative after the step-by-step parameters have drifted by ~rtol each step.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "tests/support/gpt_fixture.h"
#include "tests/support/test_util.h"

using namespace mp;
using json = nlohmann::json;
using mp::testing::expect_close;

namespace {

using mp::testing::FixtureModel;
const json& fixture() { return mp::testing::gpt_fixture(); }
Tensor tensor_from(const json& entry) { return mp::testing::fixture_tensor(entry); }
FixtureModel load(Device device) { return mp::testing::load_gpt_fixture(device); }

void check_against_fixture(Device device) {
    const json& f = fixture();
    FixtureModel s = load(device);
    autograd::Tape tape;
    Tensor logits, loss;
    {
        autograd::TapeScope scope(tape);
        logits = s.model->forward(s.ids);
        loss = fn::cross_entropy(logits, s.targets, s.ignore_index);
        tape.backward(loss);
    }
    expect_close(logits, tensor_from(f.at("logits")), 1e-4, 1e-6, "logits on " + device.str());
    EXPECT_NEAR(loss.item(), f.at("loss").get<double>(), 1e-4 * f.at("loss").get<double>()) << device.str();
    for (auto& [name, param] : s.model->named_parameters())
        expect_close(autograd::grad_of(param), tensor_from(f.at("grads").at(name)), 1e-4, 1e-6,
                     "gradient of " + name + " on " + device.str());

    // Five AdamW steps from the fixture's weights: the loss before each step.
    FixtureModel fresh = load(device);
    const json& a = f.at("adamw");
    nn::AdamW adamw(fresh.model->parameters(), {a.at("lr"), a.at("beta1"), a.at("beta2"), a.at("eps"), a.at("weight_decay")});
    std::vector<double> expected = f.at("adamw_losses").get<std::vector<double>>();
    for (size_t step = 0; step < expected.size(); ++step) {
        adamw.zero_grad();
        autograd::Tape step_tape;
        autograd::TapeScope scope(step_tape);
        Tensor step_loss = fn::cross_entropy(fresh.model->forward(fresh.ids), fresh.targets, fresh.ignore_index);
        step_tape.backward(step_loss);
        adamw.step();
        EXPECT_NEAR(step_loss.item(), expected[step], 1e-4 * expected[step]) << "AdamW step " << step << " on " << device.str();
    }
}

}  // namespace

TEST(GptParity, CpuMatchesPyTorch) { check_against_fixture(Device::cpu()); }

TEST(GptParity, CudaMatchesPyTorch) {
    MP_REQUIRE_GPU();
    check_against_fixture(Device::cuda(0));
}

// CUDA against the CPU on the same small GPT: logits, loss and every parameter gradient.
// Both are float32 with different summation orders (cuBLAS, warp reductions), so the same
// reasoning as above gives rtol 1e-4 / atol 1e-6.
TEST(GptParity, CudaMatchesCpu) {
    MP_REQUIRE_GPU();
    auto run = [](Device device) {
        FixtureModel s = load(device);
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        Tensor logits = s.model->forward(s.ids);
        Tensor loss = fn::cross_entropy(logits, s.targets, s.ignore_index);
        tape.backward(loss);
        std::vector<Tensor> results = {logits.to(Device::cpu()), loss.to(Device::cpu())};
        for (const Tensor& p : s.model->parameters()) results.push_back(autograd::grad_of(p).to(Device::cpu()));
        return results;
    };
    std::vector<Tensor> cpu = run(Device::cpu()), gpu = run(Device::cuda(0));
    ASSERT_EQ(cpu.size(), gpu.size());
    expect_close(gpu[0], cpu[0], 1e-4, 1e-6, "logits cuda vs cpu");
    expect_close(gpu[1], cpu[1], 1e-4, 1e-6, "loss cuda vs cpu");
    for (size_t i = 2; i < cpu.size(); ++i) expect_close(gpu[i], cpu[i], 1e-4, 1e-6, "gradient " + std::to_string(i - 2));
}
