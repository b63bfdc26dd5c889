// CPU reference for the elementwise kernels and reductions: plain loops. Each elementwise output
// is one rounding in C = compute_t<T> (T itself, float for bfloat16; s and alpha are first rounded
// to C), then, for bfloat16, one rounding to nearest even on store — what the CUDA kernels do, so
// the two agree bitwise; reductions accumulate in double and round once at the end. Elementwise
// loops are vectorized (`omp simd`: the same arithmetic per element) and threaded from
// kMinParallelElements (kernels/cpu/parallel.h) up.
#include <vector>

#include "kernels/common/bfloat16.h"
#include "kernels/cpu/parallel.h"

#include "kernels/elementwise.h"

namespace mp::kernels::cpu {

template <typename T>
void add(T* out, const T* a, const T* b, int64_t n) {
    using C = compute_t<T>;
#pragma omp parallel for simd if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) out[i] = T(C(a[i]) + C(b[i]));
}

template <typename T>
void sub(T* out, const T* a, const T* b, int64_t n) {
    using C = compute_t<T>;
#pragma omp parallel for simd if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) out[i] = T(C(a[i]) - C(b[i]));
}

template <typename T>
void mul(T* out, const T* a, const T* b, int64_t n) {
    using C = compute_t<T>;
#pragma omp parallel for simd if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) out[i] = T(C(a[i]) * C(b[i]));
}

template <typename T>
void scale(T* out, const T* x, int64_t n, double s) {
    using C = compute_t<T>;
    const C s_c = static_cast<C>(s);
#pragma omp parallel for simd if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) out[i] = T(s_c * C(x[i]));
}

template <typename T>
void axpy(T* y, const T* x, int64_t n, double alpha) {
    using C = compute_t<T>;
    const C alpha_c = static_cast<C>(alpha);
#pragma omp parallel for simd if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) y[i] = T(C(y[i]) + alpha_c * C(x[i]));
}

template <typename T>
void bias_add(T* out, const T* x, const T* bias, int64_t rows, int64_t cols) {
    using C = compute_t<T>;
#pragma omp parallel for if (rows * cols >= kMinParallelElements)
    for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = T(C(x[r * cols + c]) + C(bias[c]));
}

template <typename T>
void sum_rows(T* out, const T* x, int64_t rows, int64_t cols) {
    std::vector<double> column_sums(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) column_sums[c] += element_to_double(x[r * cols + c]);
    for (int64_t c = 0; c < cols; ++c) out[c] = element_from_double<T>(column_sums[c]);
}

template <typename T>
void sum(T* out, const T* x, int64_t n) {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += element_to_double(x[i]);
    out[0] = element_from_double<T>(total);
}

template <typename T>
void sum_squares(T* out, const T* x, int64_t n) {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += element_to_double(x[i]) * element_to_double(x[i]);
    out[0] = element_from_double<T>(total);
}

template void add<float>(float*, const float*, const float*, int64_t);
template void add<double>(double*, const double*, const double*, int64_t);
template void sub<float>(float*, const float*, const float*, int64_t);
template void sub<double>(double*, const double*, const double*, int64_t);
template void mul<float>(float*, const float*, const float*, int64_t);
template void mul<double>(double*, const double*, const double*, int64_t);
template void scale<float>(float*, const float*, int64_t, double);
template void scale<double>(double*, const double*, int64_t, double);
template void axpy<float>(float*, const float*, int64_t, double);
template void axpy<double>(double*, const double*, int64_t, double);
template void bias_add<float>(float*, const float*, const float*, int64_t, int64_t);
template void bias_add<double>(double*, const double*, const double*, int64_t, int64_t);
template void sum_rows<float>(float*, const float*, int64_t, int64_t);
template void sum_rows<double>(double*, const double*, int64_t, int64_t);
template void sum<float>(float*, const float*, int64_t);
template void sum<double>(double*, const double*, int64_t);
template void sum_squares<float>(float*, const float*, int64_t);
template void sum_squares<double>(double*, const double*, int64_t);

template void add<bfloat16>(bfloat16*, const bfloat16*, const bfloat16*, int64_t);
template void sub<bfloat16>(bfloat16*, const bfloat16*, const bfloat16*, int64_t);
template void mul<bfloat16>(bfloat16*, const bfloat16*, const bfloat16*, int64_t);
template void scale<bfloat16>(bfloat16*, const bfloat16*, int64_t, double);
template void axpy<bfloat16>(bfloat16*, const bfloat16*, int64_t, double);
template void bias_add<bfloat16>(bfloat16*, const bfloat16*, const bfloat16*, int64_t, int64_t);
template void sum_rows<bfloat16>(bfloat16*, const bfloat16*, int64_t, int64_t);
template void sum<bfloat16>(bfloat16*, const bfloat16*, int64_t);
template void sum_squares<bfloat16>(bfloat16*, const bfloat16*, int64_t);

}  // namespace mp::kernels::cpu
