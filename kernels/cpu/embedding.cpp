// CPU reference for the embedding lookup and its gradient: plain loops. The gradient sums in T
// (not double), position by position, which is exactly the order and precision of the CUDA
// kernel, so the two agree bitwise; float64 runs give the gradient checks their precision.
// bfloat16 sums in float32 (compute_t), position by position, and rounds each sum once.
#include <vector>

#include "kernels/common/bfloat16.h"
#include "kernels/embedding.h"

namespace mp::kernels::cpu {

template <typename T>
void embedding_forward(const int32_t* ids, const T* weight, T* out, int64_t n, int64_t cols) {
#pragma omp parallel for
    for (int64_t p = 0; p < n; ++p) {
        const T* row = weight + static_cast<int64_t>(ids[p]) * cols;
        for (int64_t c = 0; c < cols; ++c) out[p * cols + c] = row[c];
    }
}

template <typename T>
void embedding_backward(const int32_t* ids, const T* dout, T* dweight, int64_t n, int64_t num_embeddings,
                        int64_t cols) {
    using C = compute_t<T>;
    std::vector<C> sums(static_cast<size_t>(num_embeddings * cols), C(0));
    for (int64_t p = 0; p < n; ++p) {
        C* row = sums.data() + static_cast<int64_t>(ids[p]) * cols;
        for (int64_t c = 0; c < cols; ++c) row[c] += static_cast<C>(dout[p * cols + c]);
    }
    for (int64_t i = 0; i < num_embeddings * cols; ++i) dweight[i] = static_cast<T>(sums[static_cast<size_t>(i)]);
}

template <typename T, typename G>
void embedding_backward_into(const int32_t* ids, const T* dout, G* dweight, int64_t n, int64_t num_embeddings,
                             int64_t cols, bool accumulate) {
    using C = compute_t<T>;
    // Sums only for the ids that occur (a compact row each, in order of first occurrence), so a
    // step touches the rows its ids use and not the whole table.
    std::vector<int64_t> compact(static_cast<size_t>(num_embeddings), -1);
    std::vector<int64_t> occurring;
    for (int64_t p = 0; p < n; ++p)
        if (compact[static_cast<size_t>(ids[p])] < 0) {
            compact[static_cast<size_t>(ids[p])] = static_cast<int64_t>(occurring.size());
            occurring.push_back(ids[p]);
        }
    std::vector<C> sums(occurring.size() * static_cast<size_t>(cols), C(0));
    for (int64_t p = 0; p < n; ++p) {
        C* row = sums.data() + compact[static_cast<size_t>(ids[p])] * cols;
        for (int64_t c = 0; c < cols; ++c) row[c] += static_cast<C>(dout[p * cols + c]);
    }
    if (!accumulate)
        for (int64_t i = 0; i < num_embeddings * cols; ++i) dweight[i] = static_cast<G>(C(0));
    for (size_t k = 0; k < occurring.size(); ++k)
        for (int64_t c = 0; c < cols; ++c) {
            G& out = dweight[occurring[k] * cols + c];
            out = static_cast<G>(static_cast<C>(out) + sums[k * static_cast<size_t>(cols) + static_cast<size_t>(c)]);
        }
}

template void embedding_forward<float>(const int32_t*, const float*, float*, int64_t, int64_t);
template void embedding_forward<double>(const int32_t*, const double*, double*, int64_t, int64_t);
template void embedding_backward<float>(const int32_t*, const float*, float*, int64_t, int64_t, int64_t);
template void embedding_backward<double>(const int32_t*, const double*, double*, int64_t, int64_t, int64_t);
template void embedding_forward<bfloat16>(const int32_t*, const bfloat16*, bfloat16*, int64_t, int64_t);
template void embedding_backward<bfloat16>(const int32_t*, const bfloat16*, bfloat16*, int64_t, int64_t, int64_t);
template void embedding_backward_into<float, float>(const int32_t*, const float*, float*, int64_t, int64_t, int64_t,
                                                    bool);
template void embedding_backward_into<double, double>(const int32_t*, const double*, double*, int64_t, int64_t,
                                                      int64_t, bool);
template void embedding_backward_into<bfloat16, float>(const int32_t*, const bfloat16*, float*, int64_t, int64_t,
                                                       int64_t, bool);
template void embedding_backward_into<bfloat16, bfloat16>(const int32_t*, const bfloat16*, bfloat16*, int64_t,
                                                          int64_t, int64_t, bool);

}  // namespace mp::kernels::cpu
