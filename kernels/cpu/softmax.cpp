// CPU reference for the softmax kernels: one row at a time, max-subtracted, sums in double (for
// bfloat16 too: its statistics are never rounded to 8 bits; only y and dx are, once, on store).
// The plain softmax is the causal one with every column kept and scale 1, so both share a row
// helper that takes the number of leading columns to keep.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/common/bfloat16.h"
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

// dx[j] = scale y[j] (dy[j] - sum_{k < kept} dy[k] y[k]) for j < kept; 0 beyond.
template <typename T>
void softmax_backward_row(const T* y, const T* dy, T* dx, int64_t cols, int64_t kept, double scale) {
    double dot = 0.0;
    for (int64_t j = 0; j < kept; ++j) dot += element_to_double(dy[j]) * element_to_double(y[j]);
    for (int64_t j = 0; j < kept; ++j)
        dx[j] = element_from_double<T>(scale * element_to_double(y[j]) * (element_to_double(dy[j]) - dot));
    for (int64_t j = kept; j < cols; ++j) dx[j] = element_from_double<T>(0.0);
}

}  // namespace

template <typename T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) softmax_row(x + r * cols, y + r * cols, cols, cols, 1.0);
}

template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) softmax_backward_row(y + r * cols, dy + r * cols, dx + r * cols, cols, cols, 1.0);
}

template <typename T>
void causal_softmax_forward(const T* x, T* y, int64_t rows, int64_t seq_len, double scale) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        int64_t kept = r % seq_len + 1;
        softmax_row(x + r * seq_len, y + r * seq_len, seq_len, kept, scale);
    }
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
template void softmax_forward<double>(const double*, double*, int64_t, int64_t);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t);
template void causal_softmax_forward<float>(const float*, float*, int64_t, int64_t, double);
template void causal_softmax_forward<double>(const double*, double*, int64_t, int64_t, double);
template void causal_softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t, double);
template void causal_softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t, double);
template void softmax_forward<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t);
template void softmax_backward<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t, int64_t);
template void causal_softmax_forward<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, double);
template void causal_softmax_backward<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t, int64_t,
                                                double);

}  // namespace mp::kernels::cpu
