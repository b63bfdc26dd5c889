// Implementation of the shared test helpers.
#include "tests/support/test_util.h"

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace mp::testing {

Tensor random_tensor(const Shape& shape, uint64_t seed, double scale, DType dtype) {
    Generator gen(seed);
    return Tensor::randn(shape, gen, 0.0, scale, dtype, Device::cpu());
}

Tensor random_ids(const Shape& shape, int vocab, uint64_t seed) {
    Generator gen(seed);
    Tensor u = Tensor::uniform(shape, gen, 0.0, 1.0, DType::Float64);
    std::vector<int32_t> ids(static_cast<size_t>(u.numel()));
    const double* values = u.data<double>();
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(values[i] * vocab);
    return Tensor::from_vector(ids, shape);
}

Tensor poisoned(const Shape& shape, DType dtype, Device device) {
    Tensor t = Tensor::empty(shape, dtype, device);
    t.fill_(dtype == DType::Int32 ? static_cast<double>(std::numeric_limits<int32_t>::min())
                                  : std::numeric_limits<double>::quiet_NaN());
    return t;
}

std::vector<double> to_doubles(const Tensor& t) {
    Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
    return host.to(DType::Float64).to_vector<double>();
}

void expect_close(const Tensor& actual, const Tensor& expected, double rtol, double atol, const std::string& what) {
    ASSERT_EQ(actual.shape(), expected.shape()) << what << ": shape " << shape_str(actual.shape()) << " vs "
                                                << shape_str(expected.shape());
    std::vector<double> a = to_doubles(actual);
    std::vector<double> e = to_doubles(expected);
    size_t bad = 0, worst = 0;
    double worst_excess = -1;
    for (size_t i = 0; i < a.size(); ++i) {
        double limit = atol + rtol * std::fabs(e[i]);
        double err = std::fabs(a[i] - e[i]);
        bool ok = err <= limit;  // false for NaN
        if (!ok) {
            ++bad;
            double excess = std::isnan(err) ? std::numeric_limits<double>::infinity() : err - limit;
            if (excess > worst_excess) worst_excess = excess, worst = i;
        }
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << a.size() << " elements outside rtol=" << rtol
                       << " atol=" << atol << "; worst at flat index " << worst << ": got " << a[worst]
                       << ", expected " << e[worst];
}

void expect_equal(const Tensor& actual, const Tensor& expected, const std::string& what) {
    expect_close(actual, expected, 0.0, 0.0, what);
}

std::string fresh_temp_dir(const std::string& name) {
    const std::filesystem::path dir =
        std::filesystem::path(::testing::TempDir()) / ("minipipe_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir.string();
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

}  // namespace mp::testing
