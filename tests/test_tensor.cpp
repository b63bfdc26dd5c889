// Tensor basics: factories, views (reshape, dim-0 slice) sharing storage, copies, item,
// printing, the counter-based generator (CPU vs CUDA identical), and the argument errors; and
// tensor/ops.h includes every family's header.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tensor/allocator.h"
#include "tensor/device_context.h"
#include "tensor/device_timeline.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;

TEST(Tensor, FactoriesFillValues) {
    Tensor z = Tensor::zeros({2, 3});
    EXPECT_EQ(z.shape(), (Shape{2, 3}));
    EXPECT_EQ(z.numel(), 6);
    for (float v : z.to_vector<float>()) EXPECT_EQ(v, 0.0f);
    Tensor f = Tensor::full({4}, 2.5, DType::Float64);
    for (double v : f.to_vector<double>()) EXPECT_EQ(v, 2.5);
    Tensor a = Tensor::arange(5, DType::Int32);
    EXPECT_EQ(a.to_vector<int32_t>(), (std::vector<int32_t>{0, 1, 2, 3, 4}));
    Tensor s = Tensor::full({}, 7.0);
    EXPECT_EQ(s.dim(), 0);
    EXPECT_EQ(s.item(), 7.0);
}

TEST(Tensor, RankUpToFour) {
    Tensor t = Tensor::zeros({2, 3, 4, 5});
    EXPECT_EQ(t.dim(), 4);
    EXPECT_EQ(t.size(-1), 5);
    EXPECT_EQ(t.size(1), 3);
    expect_invalid_argument([&] { t.size(4); }, {"size", "dim 4", "(2, 3, 4, 5)"});
}

TEST(Tensor, ReshapeAndSliceShareStorage) {
    Tensor t = Tensor::arange(24, DType::Float32).reshape({4, 6});
    Tensor r = t.reshape({2, -1, 3});
    EXPECT_EQ(r.shape(), (Shape{2, 4, 3}));
    EXPECT_TRUE(r.shares_storage_with(t));
    Tensor rows = t.slice(1, 3);
    EXPECT_EQ(rows.shape(), (Shape{2, 6}));
    EXPECT_TRUE(rows.shares_storage_with(t));
    EXPECT_EQ(rows.to_vector<float>()[0], 6.0f);
    rows.fill_(-1.0);  // writes through the view
    std::vector<float> all = t.to_vector<float>();
    EXPECT_EQ(all[5], 5.0f);
    EXPECT_EQ(all[6], -1.0f);
    EXPECT_EQ(all[17], -1.0f);
    EXPECT_EQ(all[18], 18.0f);
}

TEST(Tensor, ViewErrorsNameTheShapes) {
    Tensor t = Tensor::zeros({4, 6});
    expect_invalid_argument([&] { t.reshape({5, 5}); }, {"reshape", "(4, 6)", "(5, 5)", "24", "25"});
    expect_invalid_argument([&] { t.reshape({-1, -1}); }, {"reshape", "more than one -1"});
    expect_invalid_argument([&] { t.slice(3, 5); }, {"slice", "[3, 5)", "(4, 6)"});
    expect_invalid_argument([&] { Tensor::from_vector<float>({1, 2, 3}, {2, 2}); }, {"from_vector", "3 values", "(2, 2)"});
    expect_invalid_argument([&] { t.data<int32_t>(); }, {"data<int32>", "float32(4, 6)"});
    expect_invalid_argument([&] { t.item(); }, {"item", "one-element", "(4, 6)"});
    expect_invalid_argument([&] { Tensor::zeros({2, -3}); }, {"negative dimension", "(2, -3)"});
}

TEST(Tensor, CopiesAreIndependent) {
    Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
    Tensor b = a.clone();
    EXPECT_FALSE(b.shares_storage_with(a));
    b.fill_(0.0);
    EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
    Tensor c = Tensor::zeros({2, 2});
    c.copy_from(a);
    EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));
    expect_invalid_argument([&] { c.copy_from(Tensor::zeros({4})); }, {"copy_from", "float32(2, 2)", "float32(4)"});
    Tensor d = a.to(DType::Float64);
    EXPECT_EQ(d.to_vector<double>(), (std::vector<double>{1, 2, 3, 4}));
}

TEST(Tensor, PrintsSmallTensorsReadably) {
    std::ostringstream out;
    out << Tensor::from_vector<float>({1, 2.5f, 3, 4, 5, 6}, {2, 3});
    EXPECT_EQ(out.str(), "Tensor([[1, 2.5, 3],\n [4, 5, 6]], float32(2, 3) on cpu)");
    std::ostringstream longer;
    longer << Tensor::arange(10, DType::Int32);
    EXPECT_EQ(longer.str(), "Tensor([0, 1, 2, ..., 7, 8, 9], int32(10) on cpu)");
}

TEST(Generator, SameSeedSameValuesAndDrawsAdvance) {
    Generator g1(42), g2(42), g3(43);
    Tensor a = Tensor::randn({1000}, g1);
    Tensor b = Tensor::randn({1000}, g2);
    Tensor c = Tensor::randn({1000}, g3);
    expect_equal(a, b, "same seed");
    EXPECT_NE(a.to_vector<float>()[0], c.to_vector<float>()[0]);
    Tensor a2 = Tensor::randn({1000}, g1);  // the next draw continues the stream
    EXPECT_NE(a.to_vector<float>()[0], a2.to_vector<float>()[0]);
    EXPECT_EQ(g1.offset(), 2000u);
}

// Moments of 200k draws: the mean's standard error is 1/sqrt(n) ~ 0.0022, so 0.01 is > 4 sigma;
// the variance's standard error is sqrt(2/n) ~ 0.0032, so 0.015 is > 4 sigma.
TEST(Generator, NormalAndUniformHaveTheRightMoments) {
    Generator gen(7);
    std::vector<double> x = Tensor::randn({200000}, gen, 0.0, 1.0, DType::Float64).to_vector<double>();
    double mean = 0, var = 0;
    for (double v : x) mean += v;
    mean /= x.size();
    for (double v : x) var += (v - mean) * (v - mean);
    var /= x.size();
    EXPECT_NEAR(mean, 0.0, 0.01);
    EXPECT_NEAR(var, 1.0, 0.015);
    std::vector<double> u = Tensor::uniform({200000}, gen, -2.0, 3.0, DType::Float64).to_vector<double>();
    double umean = 0, umin = 1e9, umax = -1e9;
    for (double v : u) umean += v, umin = std::min(umin, v), umax = std::max(umax, v);
    umean /= u.size();
    EXPECT_NEAR(umean, 0.5, 0.02);  // std 5/sqrt(12)=1.44; s.e. 0.0032
    EXPECT_GE(umin, -2.0);
    EXPECT_LT(umax, 3.0);
}

TEST(Generator, CudaMatchesCpuExactly) {
    MP_REQUIRE_GPU();
    // Both sides compute in double with the same integer hash and round once to float; the
    // double log/cos of CUDA and glibc agree to within 1 ulp of double, far below float rounding.
    Generator cpu_gen(1234), gpu_gen(1234);
    Tensor cpu = Tensor::randn({4099}, cpu_gen);
    Tensor gpu = Tensor::randn({4099}, gpu_gen, 0.0, 1.0, DType::Float32, Device::cuda(0));
    expect_close(gpu, cpu, 1.2e-7, 0.0, "randn cuda vs cpu (<= 1 float ulp)");
    Tensor cpu_u = Tensor::uniform({1001}, cpu_gen, -1.0, 1.0);
    Tensor gpu_u = Tensor::uniform({1001}, gpu_gen, -1.0, 1.0, DType::Float32, Device::cuda(0));
    expect_equal(gpu_u, cpu_u, "uniform cuda vs cpu");
}

TEST(Tensor, CudaRoundTripAndViews) {
    MP_REQUIRE_GPU();
    Tensor host = Tensor::arange(35, DType::Float32).reshape({5, 7});
    Tensor gpu = host.to(Device::cuda(0));
    EXPECT_TRUE(gpu.device().is_cuda());
    expect_equal(gpu.slice(2, 4).to(Device::cpu()), host.slice(2, 4), "cuda slice");
    Tensor filled = Tensor::full({3, 3}, 1.5, DType::Float32, Device::cuda(0));
    EXPECT_EQ(filled.to_vector<float>(), std::vector<float>(9, 1.5f));
    Tensor ids = Tensor::arange(6, DType::Int32, Device::cuda(0));
    EXPECT_EQ(ids.to_vector<int32_t>(), (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
    expect_invalid_argument([&] { Tensor::zeros({2}, DType::Float64, Device::cuda(0)); }, {"float64 is CPU-only"});
}

TEST(Tensor, CudaDeviceOutOfRangeIsAnError) {
    if (!cuda_compiled()) GTEST_SKIP() << "built without CUDA";
    int n = cuda_device_count();
    expect_invalid_argument([&] { Tensor::zeros({2}, DType::Float32, Device::cuda(n)); },
                            {"cuda:" + std::to_string(n), std::to_string(n) + " GPU(s) are visible"});
}

TEST(Tensor, IdentitySharedByCopiesFreshForViews) {
    Tensor a = Tensor::zeros({4, 3});
    Tensor copy = a;
    EXPECT_EQ(copy.id(), a.id());
    EXPECT_NE(a.reshape({12}).id(), a.id());
    EXPECT_NE(a.slice(0, 2).id(), a.id());
    EXPECT_NE(a.clone().id(), a.id());
    EXPECT_NE(Tensor::zeros({4, 3}).id(), a.id());
}

TEST(DeviceTimeline, CpuMarksAreHostClockReadingsInOrder) {
    DeviceTimeline timeline(Device::cpu());
    const size_t origin = timeline.mark();
    volatile double sink = 0;
    for (int i = 0; i < 200000; ++i) sink = sink + i;
    const size_t end = timeline.mark();
    EXPECT_EQ(timeline.marks(), 2u);
    EXPECT_GT(timeline.microseconds(origin, end), 0.0);
    EXPECT_EQ(timeline.microseconds(origin, origin), 0.0);
    timeline.clear();
    EXPECT_EQ(timeline.marks(), 0u);
    mp::testing::expect_invalid_argument([&] { timeline.microseconds(0, 1); }, {"DeviceTimeline", "marks 0 and 1"});
}

TEST(DeviceTimeline, CudaMarksTimeTheDeviceWithoutWaiting) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    DeviceTimeline timeline(gpu);
    for (int round = 0; round < 2; ++round) {  // the second round reuses the first one's events
        timeline.clear();
        synchronize(gpu);
        const uint64_t waits = host_wait_count();
        const size_t origin = timeline.mark();
        Tensor x = mp::testing::random_tensor({1024, 1024}, 5).to(gpu);
        const size_t after_copy = timeline.mark();
        Generator gen(7);
        for (int i = 0; i < 20; ++i) x = Tensor::randn({1024, 1024}, gen, 0.0, 1.0, DType::Float32, gpu);
        const size_t end = timeline.mark();
        EXPECT_EQ(host_wait_count(), waits + 1) << "only the host-to-device copy of x waits";
        synchronize(gpu);
        const double copy_us = timeline.microseconds(origin, after_copy);
        const double total_us = timeline.microseconds(origin, end);
        EXPECT_GE(copy_us, 0.0);
        EXPECT_GT(total_us, copy_us) << "20 fills of 4 MB with normal draws take some device time";
    }
}

// tensor/ops.h is the "all ops" header (docs/adding_a_kernel.md: a new family adds its line): it
// must include every tensor/ops/<family>.h but the shared helpers of common.h.
TEST(TensorOpsHeader, IncludesEveryFamily) {
    const std::filesystem::path root(MP_SOURCE_DIR);
    std::ifstream in(root / "tensor" / "ops.h");
    ASSERT_TRUE(in.good()) << "cannot read tensor/ops.h";
    std::stringstream text;
    text << in.rdbuf();
    int families = 0;
    for (const auto& entry : std::filesystem::directory_iterator(root / "tensor" / "ops")) {
        const std::string name = entry.path().filename().string();
        if (entry.path().extension() != ".h" || name == "common.h") continue;
        ++families;
        EXPECT_NE(text.str().find("#include \"tensor/ops/" + name + "\""), std::string::npos)
            << "tensor/ops.h does not include tensor/ops/" << name;
    }
    EXPECT_GT(families, 10);
}
