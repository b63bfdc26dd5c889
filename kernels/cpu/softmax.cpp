// CPU kernels for softmax: the reference, one row at a time, max-subtracted, sums in double (for
// bfloat16 too: its statistics are never rounded to 8 bits; only y and dx are, once, on store),
// and a float32 fast path for the forward that differs only in how e^x is evaluated (vectorized,
// kernels/cpu/simd_math.h, once per element instead of twice): the same sums in the same order.
// The plain softmax is the causal one with every column kept and scale 1, so both share a row
// helper that takes the number of leading columns to keep.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/common/bfloat16.h"
#include "kernels/cpu/simd_math.h"
#include "kernels/softmax.h"

namespace mp::kernels::cpu {

namespace {

// y[j] = exp(scale x[j] - max) / sum over j < kept; y[j] = 0 for kept <= j < cols.
template <typename T>
void softmax_row(const T* x, T* y, int64_t cols, int64_t kept, double scale) {
    double row_max = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < kept; ++j) row_max = std::max(row_max, scale * element_to_double(x[j]));
    double sum = 0.0;
    for (int64_t j = 0; j < kept; ++j) sum += std::exp(scale * element_to_double(x[j]) - row_max);
    for (int64_t j = 0; j < kept; ++j)
        y[j] = element_from_double<T>(std::exp(scale * element_to_double(x[j]) - row_max) / sum);
    for (int64_t j = kept; j < cols; ++j) y[j] = element_from_double<T>(0.0);
}

// The fast path's row: the reference's max and sum in its order, e^x from exp_vectorizable kept in
// `exps` (a row's worth of doubles) and divided once. y then differs from the reference only where
// the two exps' last bits move y across a float32 rounding midpoint: one ulp, rarely.
MP_SIMD_CLONES void softmax_row_fast(const float* x, float* y, int64_t cols, int64_t kept, double scale,
                                     double* exps) {
    double row_max = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < kept; ++j) row_max = std::max(row_max, scale * static_cast<double>(x[j]));
#pragma omp simd
    for (int64_t j = 0; j < kept; ++j) exps[j] = simd::exp_vectorizable(scale * static_cast<double>(x[j]) - row_max);
    double sum = 0.0;
    for (int64_t j = 0; j < kept; ++j) sum += exps[j];
#pragma omp simd
    for (int64_t j = 0; j < kept; ++j) y[j] = static_cast<float>(exps[j] / sum);
    for (int64_t j = kept; j < cols; ++j) y[j] = 0.0f;
}

// dx[j] = scale y[j] (dy[j] - sum_{k < kept} dy[k] y[k]) for j < kept; 0 beyond.
template <typename T>
void softmax_backward_row(const T* y, const T* dy, T* dx, int64_t cols, int64_t kept, double scale) {
    double dot = 0.0;
    for (int64_t j = 0; j < kept; ++j) dot += element_to_double(dy[j]) * element_to_double(y[j]);
#pragma omp simd
    for (int64_t j = 0; j < kept; ++j)
        dx[j] = element_from_double<T>(scale * element_to_double(y[j]) * (element_to_double(dy[j]) - dot));
    for (int64_t j = kept; j < cols; ++j) dx[j] = element_from_double<T>(0.0);
}

// Row r of `rows` keeps kept(r) leading columns: the reference rows, or float32's fast ones.
template <typename T, typename Kept>
void softmax_rows(const T* x, T* y, int64_t rows, int64_t cols, double scale, Kept kept, bool reference) {
    if constexpr (std::is_same_v<T, float>) {
        if (!reference) {
            // A row of doubles per thread, allocated here: nothing may throw inside the region. Its
            // team has at most `threads` threads (one when this runs inside another region).
            const int threads = omp_get_max_threads();
            std::vector<double> exps(static_cast<size_t>(threads) * static_cast<size_t>(cols));
#pragma omp parallel num_threads(threads)
            {
                double* thread_exps = exps.data() + static_cast<size_t>(omp_get_thread_num()) * cols;
#pragma omp for
                for (int64_t r = 0; r < rows; ++r)
                    softmax_row_fast(x + r * cols, y + r * cols, cols, kept(r), scale, thread_exps);
            }
            return;
        }
    }
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * cols, y + r * cols, cols, kept(r), scale);
}

}  // namespace

template <typename T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols) {
    softmax_rows(x, y, rows, cols, 1.0, [cols](int64_t) { return cols; }, false);
}

template <typename T>
void softmax_forward_reference(const T* x, T* y, int64_t rows, int64_t cols) {
    softmax_rows(x, y, rows, cols, 1.0, [cols](int64_t) { return cols; }, true);
}

template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r)
        softmax_backward_row(y + r * cols, dy + r * cols, dx + r * cols, cols, cols, 1.0);
}

template <typename T>
void causal_softmax_forward(const T* x, T* y, int64_t rows, int64_t seq_len, double scale) {
    softmax_rows(x, y, rows, seq_len, scale, [seq_len](int64_t r) { return r % seq_len + 1; }, false);
}

template <typename T>
void causal_softmax_forward_reference(const T* x, T* y, int64_t rows, int64_t seq_len, double scale) {
    softmax_rows(x, y, rows, seq_len, scale, [seq_len](int64_t r) { return r % seq_len + 1; }, true);
}

template <typename T>
void causal_softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t seq_len, double scale) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        int64_t kept = r % seq_len + 1;
        softmax_backward_row(y + r * seq_len, dy + r * seq_len, dx + r * seq_len, seq_len, kept, scale);
    }
}

template void softmax_forward<float>(const float*, float*, int64_t, int64_t);
template void softmax_forward_reference<float>(const float*, float*, int64_t, int64_t);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t);
template void causal_softmax_forward<float>(const float*, float*, int64_t, int64_t, double);
template void causal_softmax_forward_reference<float>(const float*, float*, int64_t, int64_t, double);
template void causal_softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t, double);
template void softmax_forward<double>(const double*, double*, int64_t, int64_t);
template void softmax_forward_reference<double>(const double*, double*, int64_t, int64_t);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t);
template void causal_softmax_forward<double>(const double*, double*, int64_t, int64_t, double);
template void causal_softmax_forward_reference<double>(const double*, double*, int64_t, int64_t, double);
template void causal_softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t, double);
template void softmax_forward<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t);
template void softmax_forward_reference<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t);
template void softmax_backward<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t, int64_t);
template void causal_softmax_forward<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, double);
template void causal_softmax_forward_reference<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, double);
template void causal_softmax_backward<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t, int64_t, double);

}  // namespace mp::kernels::cpu
