// Shared test helpers: GPU skip, NaN-poisoned outputs, seeded random tensors, and closeness
// checks that report the worst element (index, both values, the tolerance that was asked for).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mp::testing {

// Skips the current test, with the reason, when no GPU is visible (or CUDA is not compiled).
#define MP_REQUIRE_GPU()                                                                          \
    do {                                                                                          \
        if (!::mp::cuda_available())                                                              \
            GTEST_SKIP() << (::mp::cuda_compiled() ? "no GPU visible on this machine"             \
                                                   : "built without CUDA");                       \
    } while (0)

// A CPU float tensor of the given shape with N(0, scale^2) values from `seed`.
Tensor random_tensor(const Shape& shape, uint64_t seed, double scale = 1.0, DType dtype = DType::Float32);
// Token ids uniform in [0, vocab).
Tensor random_ids(const Shape& shape, int vocab, uint64_t seed);

// A tensor of `shape` on `device` filled with NaN (floats) or INT32_MIN (ints): an output
// that a kernel fails to write shows up in the comparison.
Tensor poisoned(const Shape& shape, DType dtype, Device device);

// Expects |actual - expected| <= atol + rtol * |expected| for every element; both tensors are
// copied to the CPU and compared in double. `what` names the quantity in the failure message.
void expect_close(const Tensor& actual, const Tensor& expected, double rtol, double atol, const std::string& what);

// Expects the two tensors to be bitwise equal.
void expect_equal(const Tensor& actual, const Tensor& expected, const std::string& what);

// Runs `fn` and expects it to throw std::invalid_argument whose message contains every fragment.
template <typename Fn>
void expect_invalid_argument(Fn&& fn, const std::vector<std::string>& fragments) {
    try {
        fn();
        ADD_FAILURE() << "expected std::invalid_argument, nothing was thrown";
    } catch (const std::invalid_argument& e) {
        std::string message = e.what();
        for (const std::string& fragment : fragments)
            EXPECT_NE(message.find(fragment), std::string::npos)
                << "message '" << message << "' lacks '" << fragment << "'";
    }
}

// All elements as doubles (any dtype, any device).
std::vector<double> to_doubles(const Tensor& t);

// A fresh, empty directory for one test: <gtest's TempDir>/minipipe_<name>_<pid> (the pid keeps
// concurrent runs of the same binary apart), emptied if it exists.
std::string fresh_temp_dir(const std::string& name);

// A whole file as a string ("" when it cannot be read).
std::string read_text_file(const std::string& path);

}  // namespace mp::testing
