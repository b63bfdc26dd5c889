// CPU reference for the attention layout permutations: nested loops over (b, t, h, d) that read
// and write with the index formulas spelled out.
#include "kernels/attention_layout.h"
#include "kernels/common/bfloat16.h"

namespace mp::kernels::cpu {

namespace {

// Offset of element (b, h, t, d) in a (B, H, T, D) tensor.
inline int64_t head_major(int64_t b, int64_t h, int64_t t, int64_t d, int64_t seq, int64_t heads, int64_t head_dim) {
    return ((b * heads + h) * seq + t) * head_dim + d;
}

// Offset of element (b, t, part, h, d) in a (B, T, parts, H, D) tensor.
inline int64_t row_major(int64_t b, int64_t t, int64_t part, int64_t h, int64_t d, int64_t seq, int64_t parts,
                         int64_t heads, int64_t head_dim) {
    return (((b * seq + t) * parts + part) * heads + h) * head_dim + d;
}

}  // namespace

template <typename T>
void split_qkv_heads(const T* qkv, T* q, T* k, T* v, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
    T* outputs[3] = {q, k, v};
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < seq; ++t)
            for (int64_t part = 0; part < 3; ++part)
                for (int64_t h = 0; h < heads; ++h)
                    for (int64_t d = 0; d < head_dim; ++d)
                        outputs[part][head_major(b, h, t, d, seq, heads, head_dim)] =
                            qkv[row_major(b, t, part, h, d, seq, 3, heads, head_dim)];
}

template <typename T>
void merge_qkv_heads(const T* dq, const T* dk, const T* dv, T* dqkv, int64_t batch, int64_t seq, int64_t heads,
                     int64_t head_dim) {
    const T* inputs[3] = {dq, dk, dv};
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < seq; ++t)
            for (int64_t part = 0; part < 3; ++part)
                for (int64_t h = 0; h < heads; ++h)
                    for (int64_t d = 0; d < head_dim; ++d)
                        dqkv[row_major(b, t, part, h, d, seq, 3, heads, head_dim)] =
                            inputs[part][head_major(b, h, t, d, seq, heads, head_dim)];
}

template <typename T>
void merge_heads(const T* y, T* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < seq; ++t)
            for (int64_t h = 0; h < heads; ++h)
                for (int64_t d = 0; d < head_dim; ++d)
                    out[row_major(b, t, 0, h, d, seq, 1, heads, head_dim)] = y[head_major(b, h, t, d, seq, heads, head_dim)];
}

template <typename T>
void split_heads(const T* x, T* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < seq; ++t)
            for (int64_t h = 0; h < heads; ++h)
                for (int64_t d = 0; d < head_dim; ++d)
                    out[head_major(b, h, t, d, seq, heads, head_dim)] = x[row_major(b, t, 0, h, d, seq, 1, heads, head_dim)];
}

template void split_qkv_heads<float>(const float*, float*, float*, float*, int64_t, int64_t, int64_t, int64_t);
template void split_qkv_heads<double>(const double*, double*, double*, double*, int64_t, int64_t, int64_t, int64_t);
template void merge_qkv_heads<float>(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t,
                                     int64_t);
template void merge_qkv_heads<double>(const double*, const double*, const double*, double*, int64_t, int64_t, int64_t,
                                      int64_t);
template void merge_heads<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t);
template void merge_heads<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t);
template void split_heads<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t);
template void split_heads<double>(const double*, double*, int64_t, int64_t, int64_t, int64_t);

template void split_qkv_heads<bfloat16>(const bfloat16*, bfloat16*, bfloat16*, bfloat16*, int64_t, int64_t, int64_t,
                                        int64_t);
template void merge_qkv_heads<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, bfloat16*, int64_t, int64_t,
                                        int64_t, int64_t);
template void merge_heads<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, int64_t, int64_t);
template void split_heads<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, int64_t, int64_t);

}  // namespace mp::kernels::cpu
