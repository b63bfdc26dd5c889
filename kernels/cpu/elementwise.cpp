// CPU reference for the elementwise kernels and reductions: plain loops. Each elementwise output
// is one rounding in T (s and alpha are first rounded to T), which the CUDA kernels reproduce
// exactly; reductions accumulate in double and round once at the end.
#include <vector>

#include "kernels/elementwise.h"

namespace mp::kernels::cpu {

template <typename T>
void add(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <typename T>
void sub(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] - b[i];
}

template <typename T>
void mul(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

template <typename T>
void scale(T* out, const T* x, int64_t n, double s) {
    const T s_t = static_cast<T>(s);
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) out[i] = s_t * x[i];
}

template <typename T>
void axpy(T* y, const T* x, int64_t n, double alpha) {
    const T alpha_t = static_cast<T>(alpha);
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] + alpha_t * x[i];
}

template <typename T>
void bias_add(T* out, const T* x, const T* bias, int64_t rows, int64_t cols) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = x[r * cols + c] + bias[c];
}

template <typename T>
void sum_rows(T* out, const T* x, int64_t rows, int64_t cols) {
    std::vector<double> column_sums(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) column_sums[c] += static_cast<double>(x[r * cols + c]);
    for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<T>(column_sums[c]);
}

template <typename T>
void sum(T* out, const T* x, int64_t n) {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += static_cast<double>(x[i]);
    out[0] = static_cast<T>(total);
}

template <typename T>
void sum_squares(T* out, const T* x, int64_t n) {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    out[0] = static_cast<T>(total);
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

}  // namespace mp::kernels::cpu
