// CPU reference for LayerNorm: plain loops, row statistics and column sums accumulated in double;
// bfloat16 tensors keep their saved mean and rstd in float32 (compute_t) and round y, dx, dgamma
// and dbeta once on store.
// Rows are independent, so the per-row loops run under OpenMP; the column sums of dgamma/dbeta
// run serially over rows, each column on one thread, so their order never depends on the thread
// count. Loops without a sum are marked `omp simd`: vectorized, the same arithmetic per element.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/bfloat16.h"
#include "kernels/cpu/parallel.h"
#include "kernels/layernorm.h"

namespace mp::kernels::cpu {

template <typename T>
void layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, compute_t<T>* mean, compute_t<T>* rstd,
                       int64_t rows, int64_t cols, double eps) {
    using S = compute_t<T>;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        const T* x_row = x + r * cols;
        T* y_row = y + r * cols;
        double sum = 0.0;
        for (int64_t c = 0; c < cols; ++c) sum += element_to_double(x_row[c]);
        double row_mean = sum / cols;
        double squares = 0.0;
        for (int64_t c = 0; c < cols; ++c) {
            double centred = element_to_double(x_row[c]) - row_mean;
            squares += centred * centred;
        }
        double row_rstd = 1.0 / std::sqrt(squares / cols + eps);
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) {
            double normalised = (element_to_double(x_row[c]) - row_mean) * row_rstd;
            y_row[c] = element_from_double<T>(normalised * element_to_double(gamma[c]) + element_to_double(beta[c]));
        }
        mean[r] = static_cast<S>(row_mean);
        rstd[r] = static_cast<S>(row_rstd);
    }
}

// With xhat = (x - mean) * rstd and g = dy * gamma, for each row:
//   dx = rstd * (g - mean_over_row(g) - xhat * mean_over_row(g * xhat))
// and over all rows: dgamma = sum(dy * xhat), dbeta = sum(dy).
template <typename T>
void layernorm_backward(const T* dy, const T* x, const T* gamma, const compute_t<T>* mean, const compute_t<T>* rstd,
                        T* dx, T* dgamma, T* dbeta, int64_t rows, int64_t cols) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        const T* dy_row = dy + r * cols;
        const T* x_row = x + r * cols;
        T* dx_row = dx + r * cols;
        const double row_mean = mean[r], row_rstd = rstd[r];
        double sum_g = 0.0, sum_g_xhat = 0.0;
        for (int64_t c = 0; c < cols; ++c) {
            double xhat = (element_to_double(x_row[c]) - row_mean) * row_rstd;
            double g = element_to_double(dy_row[c]) * element_to_double(gamma[c]);
            sum_g += g;
            sum_g_xhat += g * xhat;
        }
        double mean_g = sum_g / cols;
        double mean_g_xhat = sum_g_xhat / cols;
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) {
            double xhat = (element_to_double(x_row[c]) - row_mean) * row_rstd;
            double g = element_to_double(dy_row[c]) * element_to_double(gamma[c]);
            dx_row[c] = element_from_double<T>(row_rstd * (g - mean_g - xhat * mean_g_xhat));
        }
    }
    std::vector<double> dgamma_sum(static_cast<size_t>(cols), 0.0);
    std::vector<double> dbeta_sum(static_cast<size_t>(cols), 0.0);
    // Each thread a span of columns, over the rows in order.
    for_each_span(
        cols,
        [&](int64_t first, int64_t last) {
            for (int64_t r = 0; r < rows; ++r) {
                const double row_mean = mean[r], row_rstd = rstd[r];
#pragma omp simd
                for (int64_t c = first; c < last; ++c) {
                    double xhat = (element_to_double(x[r * cols + c]) - row_mean) * row_rstd;
                    dgamma_sum[c] += element_to_double(dy[r * cols + c]) * xhat;
                    dbeta_sum[c] += element_to_double(dy[r * cols + c]);
                }
            }
        },
        kMinParallelElements / std::max<int64_t>(rows, 1));
    for (int64_t c = 0; c < cols; ++c) {
        dgamma[c] = element_from_double<T>(dgamma_sum[c]);
        dbeta[c] = element_from_double<T>(dbeta_sum[c]);
    }
}

template void layernorm_forward<float>(const float*, const float*, const float*, float*, float*, float*, int64_t,
                                       int64_t, double);
template void layernorm_forward<double>(const double*, const double*, const double*, double*, double*, double*,
                                        int64_t, int64_t, double);
template void layernorm_backward<float>(const float*, const float*, const float*, const float*, const float*, float*,
                                        float*, float*, int64_t, int64_t);
template void layernorm_backward<double>(const double*, const double*, const double*, const double*, const double*,
                                         double*, double*, double*, int64_t, int64_t);
template void layernorm_forward<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, bfloat16*, float*, float*,
                                          int64_t, int64_t, double);
template void layernorm_backward<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, const float*,
                                           const float*, bfloat16*, bfloat16*, bfloat16*, int64_t, int64_t);

}  // namespace mp::kernels::cpu
