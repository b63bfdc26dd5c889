// CPU reference for the fused linear epilogues and the in-place bias gradient: the product from
// kernels/gemm.h (float32 accumulation for bfloat16), then the epilogue per element before the
// one rounding (float32: GELU's fast path); float32 results are bitwise those of GEMM, bias_add and
// gelu run one by one.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "base/error.h"
#include "kernels/activations.h"
#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"

namespace mp::kernels::cpu {

template <typename T>
void linear_forward(const T* x, const T* w, const T* b, T* y, T* pre, int64_t rows, int64_t in, int64_t out,
                    LinearEpilogue epilogue) {
    using C = compute_t<T>;
    MP_REQUIRE(epilogue == LinearEpilogue::None || b != nullptr, "linear_forward: the epilogue needs a bias");
    MP_REQUIRE(epilogue != LinearEpilogue::BiasGelu || pre != nullptr,
               "linear_forward: BiasGelu needs the pre-activation output");
    // The float32 (double) accumulator: y itself for float and double, a scratch for bfloat16.
    std::vector<C> scratch;
    C* acc = nullptr;
    if constexpr (std::is_same_v<T, C>) {
        acc = y;
    } else {
        scratch.resize(static_cast<size_t>(rows * out));
        acc = scratch.data();
    }
    gemm(false, true, rows, out, in, C(1), x, in, w, in, C(0), acc, out, false);
    if constexpr (std::is_same_v<T, float>) {
        // float32: y holds the product; the bias, then GELU's fast path (kernels/cpu/activations.cpp)
        // over the whole pre-activation — the same bits as bias_add and gelu run one by one.
        if (epilogue == LinearEpilogue::None) return;
        T* biased = epilogue == LinearEpilogue::BiasGelu ? pre : y;
#pragma omp parallel for if (rows * out >= kMinParallelElements)
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < out; ++j) biased[r * out + j] = y[r * out + j] + b[j];
        if (epilogue == LinearEpilogue::BiasGelu) gelu_forward(pre, y, rows * out);
        return;
    }
#pragma omp parallel for if (rows * out >= kMinParallelElements)
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < out; ++j) {
            const int64_t i = r * out + j;
            C v = acc[i];
            if (epilogue != LinearEpilogue::None) v = v + static_cast<C>(b[j]);
            if (epilogue == LinearEpilogue::BiasGelu) {
                pre[i] = T(v);
                y[i] = element_from_double<T>(gelu_in_double(static_cast<double>(v)));
            } else {
                y[i] = T(v);
            }
        }
}

template <typename T, typename G>
void bias_grad(const T* dy, G* grad, int64_t rows, int64_t cols, bool accumulate) {
    std::vector<double> sums(static_cast<size_t>(cols), 0.0);
    // Each column summed over rows in order on one thread (each thread a span of columns): the
    // same sums for any thread count.
    for_each_span(
        cols,
        [&](int64_t first, int64_t last) {
            for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
                for (int64_t j = first; j < last; ++j)
                    sums[static_cast<size_t>(j)] += element_to_double(dy[r * cols + j]);
        },
        kMinParallelElements / std::max<int64_t>(rows, 1));
    // As the CUDA kernel: the sum in the accumulator type A (float32; double for double), added to
    // the old value in A, then one rounding to G (bfloat16 gradients are not rounded twice).
    using A = std::conditional_t<std::is_same_v<G, double>, double, float>;
    for (int64_t j = 0; j < cols; ++j) {
        const A sum = static_cast<A>(sums[static_cast<size_t>(j)]);
        grad[j] = static_cast<G>(accumulate ? static_cast<A>(grad[j]) + sum : sum);
    }
}

template void linear_forward<float>(const float*, const float*, const float*, float*, float*, int64_t, int64_t,
                                    int64_t, LinearEpilogue);
template void linear_forward<double>(const double*, const double*, const double*, double*, double*, int64_t, int64_t,
                                     int64_t, LinearEpilogue);
template void linear_forward<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, bfloat16*, bfloat16*,
                                       int64_t, int64_t, int64_t, LinearEpilogue);
template void bias_grad<float, float>(const float*, float*, int64_t, int64_t, bool);
template void bias_grad<double, double>(const double*, double*, int64_t, int64_t, bool);
template void bias_grad<bfloat16, float>(const bfloat16*, float*, int64_t, int64_t, bool);
template void bias_grad<bfloat16, bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, bool);

}  // namespace mp::kernels::cpu
