// CPU reference for LayerNorm: plain loops, row statistics and column sums accumulated in double.
// Rows are independent, so the per-row loops run under OpenMP; the column sums of dgamma/dbeta
// run serially over rows so their order never depends on the thread count.
#include <cmath>
#include <vector>

#include "kernels/layernorm.h"

namespace mp::kernels::cpu {

template <typename T>
void layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t cols,
                       double eps) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        const T* x_row = x + r * cols;
        T* y_row = y + r * cols;
        double sum = 0.0;
        for (int64_t c = 0; c < cols; ++c) sum += x_row[c];
        double row_mean = sum / cols;
        double squares = 0.0;
        for (int64_t c = 0; c < cols; ++c) {
            double centred = x_row[c] - row_mean;
            squares += centred * centred;
        }
        double row_rstd = 1.0 / std::sqrt(squares / cols + eps);
        for (int64_t c = 0; c < cols; ++c) {
            double normalised = (x_row[c] - row_mean) * row_rstd;
            y_row[c] = static_cast<T>(normalised * gamma[c] + beta[c]);
        }
        mean[r] = static_cast<T>(row_mean);
        rstd[r] = static_cast<T>(row_rstd);
    }
}

// With xhat = (x - mean) * rstd and g = dy * gamma, for each row:
//   dx = rstd * (g - mean_over_row(g) - xhat * mean_over_row(g * xhat))
// and over all rows: dgamma = sum(dy * xhat), dbeta = sum(dy).
template <typename T>
void layernorm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx, T* dgamma,
                        T* dbeta, int64_t rows, int64_t cols) {
#pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        const T* dy_row = dy + r * cols;
        const T* x_row = x + r * cols;
        T* dx_row = dx + r * cols;
        double sum_g = 0.0, sum_g_xhat = 0.0;
        for (int64_t c = 0; c < cols; ++c) {
            double xhat = (static_cast<double>(x_row[c]) - mean[r]) * rstd[r];
            double g = static_cast<double>(dy_row[c]) * gamma[c];
            sum_g += g;
            sum_g_xhat += g * xhat;
        }
        double mean_g = sum_g / cols;
        double mean_g_xhat = sum_g_xhat / cols;
        for (int64_t c = 0; c < cols; ++c) {
            double xhat = (static_cast<double>(x_row[c]) - mean[r]) * rstd[r];
            double g = static_cast<double>(dy_row[c]) * gamma[c];
            dx_row[c] = static_cast<T>(rstd[r] * (g - mean_g - xhat * mean_g_xhat));
        }
    }
    std::vector<double> dgamma_sum(static_cast<size_t>(cols), 0.0);
    std::vector<double> dbeta_sum(static_cast<size_t>(cols), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            double xhat = (static_cast<double>(x[r * cols + c]) - mean[r]) * rstd[r];
            dgamma_sum[c] += static_cast<double>(dy[r * cols + c]) * xhat;
            dbeta_sum[c] += dy[r * cols + c];
        }
    }
    for (int64_t c = 0; c < cols; ++c) {
        dgamma[c] = static_cast<T>(dgamma_sum[c]);
        dbeta[c] = static_cast<T>(dbeta_sum[c]);
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

}  // namespace mp::kernels::cpu
