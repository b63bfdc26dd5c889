// CPU reference for cross-entropy with an ignore index: plain loops over each row, max-subtracted
// logsumexp accumulated in double, rows in parallel (each row's result is independent of threading).
// bfloat16 logits keep their losses and logsumexp in float32 (compute_t): only dlogits is rounded
// to bfloat16, once.
#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "kernels/common/bfloat16.h"
#include "kernels/cross_entropy.h"

namespace mp::kernels::cpu {

namespace {

bool target_is_valid(int32_t target, int64_t vocab, int ignore_index) {
    return target == ignore_index || (target >= 0 && target < vocab);
}

[[noreturn]] void throw_invalid_target(const char* op, int32_t target, int64_t row, int64_t vocab,
                                       int ignore_index) {
    throw std::invalid_argument(str(op, ": target ", target, " at row ", row, " is outside [0, ", vocab,
                                    ") and is not ignore_index ", ignore_index));
}

}  // namespace

template <typename T>
void cross_entropy_mean_weight(const int32_t* targets, int64_t rows, int ignore_index, T* out) {
    int64_t counted = 0;
    for (int64_t r = 0; r < rows; ++r) counted += targets[r] != ignore_index;
    out[0] = counted > 0 ? static_cast<T>(1.0 / static_cast<double>(counted)) : T(0);
}

template <typename T>
void cross_entropy_forward(const T* logits, const int32_t* targets, compute_t<T>* losses, compute_t<T>* logsumexp,
                           int64_t rows, int64_t vocab, int ignore_index) {
    using S = compute_t<T>;
    // An exception must not leave an OpenMP region: record the first bad row, throw after the loop.
    int64_t first_bad_row = rows;
#pragma omp parallel for reduction(min : first_bad_row)
    for (int64_t r = 0; r < rows; ++r) {
        const T* row = logits + r * vocab;
        double row_max = element_to_double(row[0]);
        for (int64_t j = 1; j < vocab; ++j) row_max = std::max(row_max, element_to_double(row[j]));
        double sum = 0.0;
        for (int64_t j = 0; j < vocab; ++j) sum += std::exp(element_to_double(row[j]) - row_max);
        double lse = row_max + std::log(sum);
        logsumexp[r] = static_cast<S>(lse);

        int32_t target = targets[r];
        if (target == ignore_index) {
            losses[r] = S(0);
        } else if (target_is_valid(target, vocab, ignore_index)) {
            losses[r] = static_cast<S>(lse - element_to_double(row[target]));
        } else {
            losses[r] = std::numeric_limits<S>::quiet_NaN();
            first_bad_row = std::min(first_bad_row, r);
        }
    }
    if (first_bad_row < rows)
        throw_invalid_target("cross_entropy_forward", targets[first_bad_row], first_bad_row, vocab, ignore_index);
}

template <typename T>
void cross_entropy_backward(const T* logits, const int32_t* targets, const compute_t<T>* logsumexp,
                            const compute_t<T>* dlosses, T* dlogits, int64_t rows, int64_t vocab, int ignore_index) {
    const T zero = element_from_double<T>(0.0), nan = element_from_double<T>(std::numeric_limits<double>::quiet_NaN());
    int64_t first_bad_row = rows;
#pragma omp parallel for reduction(min : first_bad_row)
    for (int64_t r = 0; r < rows; ++r) {
        const T* row = logits + r * vocab;
        T* grad = dlogits + r * vocab;
        int32_t target = targets[r];
        if (target == ignore_index) {
            for (int64_t j = 0; j < vocab; ++j) grad[j] = zero;
            continue;
        }
        if (!target_is_valid(target, vocab, ignore_index)) {
            for (int64_t j = 0; j < vocab; ++j) grad[j] = nan;
            first_bad_row = std::min(first_bad_row, r);
            continue;
        }
        double lse = logsumexp[r];
        double dloss = dlosses[r];
        for (int64_t j = 0; j < vocab; ++j) {
            double probability = std::exp(element_to_double(row[j]) - lse);
            double indicator = (j == target) ? 1.0 : 0.0;
            grad[j] = element_from_double<T>(dloss * (probability - indicator));
        }
    }
    if (first_bad_row < rows)
        throw_invalid_target("cross_entropy_backward", targets[first_bad_row], first_bad_row, vocab, ignore_index);
}

template <typename T>
void cross_entropy_fused(T* logits, const int32_t* targets, compute_t<T>* losses, int64_t rows, int64_t vocab,
                         int64_t stride, int ignore_index, compute_t<T> dloss, bool write_gradient) {
    using S = compute_t<T>;
    const T zero = element_from_double<T>(0.0), nan = element_from_double<T>(std::numeric_limits<double>::quiet_NaN());
    int64_t first_bad_row = rows;
#pragma omp parallel for reduction(min : first_bad_row)
    for (int64_t r = 0; r < rows; ++r) {
        T* row = logits + r * stride;
        double row_max = element_to_double(row[0]);
        for (int64_t j = 1; j < vocab; ++j) row_max = std::max(row_max, element_to_double(row[j]));
        double sum = 0.0;
        for (int64_t j = 0; j < vocab; ++j) sum += std::exp(element_to_double(row[j]) - row_max);
        const double exact_lse = row_max + std::log(sum);
        const S lse = static_cast<S>(exact_lse);  // as the forward stores it
        const int32_t target = targets[r];
        const bool ignored = target == ignore_index, valid = target_is_valid(target, vocab, ignore_index);
        if (ignored) losses[r] = S(0);
        else if (valid) losses[r] = static_cast<S>(exact_lse - element_to_double(row[target]));
        else losses[r] = std::numeric_limits<S>::quiet_NaN(), first_bad_row = std::min(first_bad_row, r);
        if (!write_gradient) continue;
        for (int64_t j = 0; j < stride; ++j) {
            if (j >= vocab || ignored) {
                row[j] = zero;
            } else if (!valid) {
                row[j] = nan;
            } else {
                const double probability = std::exp(element_to_double(row[j]) - static_cast<double>(lse));
                const double indicator = (j == target) ? 1.0 : 0.0;
                row[j] = element_from_double<T>(static_cast<double>(dloss) * (probability - indicator));
            }
        }
    }
    if (first_bad_row < rows)
        throw_invalid_target("cross_entropy_fused", targets[first_bad_row], first_bad_row, vocab, ignore_index);
}

template void cross_entropy_forward<float>(const float*, const int32_t*, float*, float*, int64_t, int64_t, int);
template void cross_entropy_forward<double>(const double*, const int32_t*, double*, double*, int64_t, int64_t, int);
template void cross_entropy_backward<float>(const float*, const int32_t*, const float*, const float*, float*, int64_t,
                                            int64_t, int);
template void cross_entropy_backward<double>(const double*, const int32_t*, const double*, const double*, double*,
                                             int64_t, int64_t, int);
template void cross_entropy_mean_weight<float>(const int32_t*, int64_t, int, float*);
template void cross_entropy_mean_weight<double>(const int32_t*, int64_t, int, double*);
template void cross_entropy_forward<bfloat16>(const bfloat16*, const int32_t*, float*, float*, int64_t, int64_t, int);
template void cross_entropy_backward<bfloat16>(const bfloat16*, const int32_t*, const float*, const float*, bfloat16*,
                                               int64_t, int64_t, int);
template void cross_entropy_fused<float>(float*, const int32_t*, float*, int64_t, int64_t, int64_t, int, float, bool);
template void cross_entropy_fused<double>(double*, const int32_t*, double*, int64_t, int64_t, int64_t, int, double,
                                          bool);
template void cross_entropy_fused<bfloat16>(bfloat16*, const int32_t*, float*, int64_t, int64_t, int64_t, int, float,
                                            bool);

}  // namespace mp::kernels::cpu
