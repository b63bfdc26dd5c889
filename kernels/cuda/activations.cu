// CUDA activation kernels: ReLU and tanh-approximate GELU, forward and backward, float32 and
// bfloat16 (loaded to float32, the same functor, rounded to nearest even once on store; a scalar
// grid-stride loop moving half the bytes, so half the float32 floor).
// Floor (H100, ~3 TB/s): forward reads x and writes y, 8 bytes per element (16384 x 3072 in
// ~0.13 ms); backward reads x and dy and writes dx, 12 bytes (~0.20 ms). One expf and one
// division per element are far below the FP32 rate, so these are pure bandwidth kernels.
//
// Design: one grid-stride kernel per arity (one input, two inputs), templated on a functor.
// When every pointer is 16-byte aligned the bulk moves as float4, one 16-byte load per input
// per thread per step; the last n % 4 elements, or all n when a pointer is not aligned (a
// slice starting mid-vector), take a scalar loop in the same kernel.
// GELU uses the identity 0.5 (1 + tanh u) = sigmoid(2u) = 1 / (1 + exp(-2u)), evaluated with
// t = exp(-2|u|) in (0, 1]: unlike 1 + tanhf(u) it does not cancel for x << 0 (where GELU is a
// tiny negative number), and unlike exp(-2u) it never overflows.
#include <cstdint>

#include "kernels/activations.h"
#include "kernels/common/bfloat16.h"
#include "kernels/cuda/check.cuh"

namespace mp::kernels::cuda {

namespace {

constexpr int kBlock = 256;
constexpr float kSqrt2OverPi = static_cast<float>(kGeluSqrt2OverPi);
constexpr float kCubic = static_cast<float>(kGeluCubic);

struct ReluForward {
    __device__ float operator()(float x) const { return x < 0.0f ? 0.0f : x; }  // NaN stays NaN
};

struct ReluBackward {
    __device__ float operator()(float x, float dy) const { return x > 0.0f ? dy : 0.0f; }
};

// s = 0.5 (1 + tanh u) and s (1 - s), for u = sqrt(2/pi) (x + 0.044715 x^3).
struct GeluSigmoid {
    float s;
    float s_times_one_minus_s;
};

__device__ __forceinline__ GeluSigmoid gelu_sigmoid(float x) {
    const float u = kSqrt2OverPi * (x + kCubic * x * x * x);
    const float t = expf(-2.0f * fabsf(u));
    const float inv = 1.0f / (1.0f + t);
    // sigmoid(2u) is 1 / (1 + t) for u >= 0 and t / (1 + t) for u < 0; either way s (1 - s) = t / (1 + t)^2.
    return {u >= 0.0f ? inv : t * inv, t * inv * inv};
}

struct GeluForward {
    __device__ float operator()(float x) const { return x * gelu_sigmoid(x).s; }
};

struct GeluBackward {
    // GELU'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx = s + 2 s (1 - s) x du/dx,
    // with du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    __device__ float operator()(float x, float dy) const {
        const GeluSigmoid sig = gelu_sigmoid(x);
        // Once |u| > ~52, t underflows and the second term is exactly 0; returning here also keeps
        // 0 * inf out of it when x^2 overflows (|x| > 1.8e19).
        if (sig.s_times_one_minus_s == 0.0f) return dy * sig.s;
        const float du_dx = kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
        return dy * (sig.s + 2.0f * sig.s_times_one_minus_s * x * du_dx);
    }
};

template <typename Op>
__device__ __forceinline__ float4 apply4(const Op& op, float4 a) {
    return make_float4(op(a.x), op(a.y), op(a.z), op(a.w));
}

template <typename Op>
__device__ __forceinline__ float4 apply4(const Op& op, float4 a, float4 b) {
    return make_float4(op(a.x, b.x), op(a.y, b.y), op(a.z, b.z), op(a.w, b.w));
}

// out[i] = op(in[i]). Elements [0, 4 * vector_count) move as float4, the rest one by one.
template <typename Op>
__global__ void map1_kernel(const float* __restrict__ in, float* __restrict__ out, int64_t n, int64_t vector_count,
                            Op op) {
    const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    const float4* in4 = reinterpret_cast<const float4*>(in);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int64_t i = first; i < vector_count; i += stride) out4[i] = apply4(op, in4[i]);
    for (int64_t i = 4 * vector_count + first; i < n; i += stride) out[i] = op(in[i]);
}

// out[i] = op(a[i], b[i]), vectorised as map1_kernel.
template <typename Op>
__global__ void map2_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                            int64_t n, int64_t vector_count, Op op) {
    const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int64_t i = first; i < vector_count; i += stride) out4[i] = apply4(op, a4[i], b4[i]);
    for (int64_t i = 4 * vector_count + first; i < n; i += stride) out[i] = op(a[i], b[i]);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Threads to launch: one per float4 plus enough for the scalar remainder.
long long threads_for(int64_t n, int64_t vector_count) {
    const int64_t scalar_count = n - 4 * vector_count;
    return vector_count > scalar_count ? vector_count : scalar_count;
}

template <typename Op>
void launch_map1(const float* in, float* out, int64_t n, Op op, cudaStream_t stream) {
    if (n == 0) return;
    const int64_t vector_count = aligned16(in) && aligned16(out) ? n / 4 : 0;
    map1_kernel<<<cuda_detail::grid_for(threads_for(n, vector_count), kBlock), kBlock, 0, stream>>>(
        in, out, n, vector_count, op);
    CUDA_CHECK_LAUNCH();
}

template <typename Op>
void launch_map2(const float* a, const float* b, float* out, int64_t n, Op op, cudaStream_t stream) {
    if (n == 0) return;
    const int64_t vector_count = aligned16(a) && aligned16(b) && aligned16(out) ? n / 4 : 0;
    map2_kernel<<<cuda_detail::grid_for(threads_for(n, vector_count), kBlock), kBlock, 0, stream>>>(
        a, b, out, n, vector_count, op);
    CUDA_CHECK_LAUNCH();
}

template <typename Op>
__global__ void map1_bf16_kernel(const bfloat16* __restrict__ in, bfloat16* __restrict__ out, int64_t n, Op op) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride)
        out[i] = bfloat16(op(static_cast<float>(in[i])));
}

template <typename Op>
__global__ void map2_bf16_kernel(const bfloat16* __restrict__ a, const bfloat16* __restrict__ b,
                                 bfloat16* __restrict__ out, int64_t n, Op op) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride)
        out[i] = bfloat16(op(static_cast<float>(a[i]), static_cast<float>(b[i])));
}

template <typename Op>
void launch_map1(const bfloat16* in, bfloat16* out, int64_t n, Op op, cudaStream_t stream) {
    if (n == 0) return;
    map1_bf16_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(in, out, n, op);
    CUDA_CHECK_LAUNCH();
}

template <typename Op>
void launch_map2(const bfloat16* a, const bfloat16* b, bfloat16* out, int64_t n, Op op, cudaStream_t stream) {
    if (n == 0) return;
    map2_bf16_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(a, b, out, n, op);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

void relu_forward(const bfloat16* x, bfloat16* y, int64_t n, cudaStream_t stream) {
    launch_map1(x, y, n, ReluForward{}, stream);
}

void relu_backward(const bfloat16* x, const bfloat16* dy, bfloat16* dx, int64_t n, cudaStream_t stream) {
    launch_map2(x, dy, dx, n, ReluBackward{}, stream);
}

void gelu_forward(const bfloat16* x, bfloat16* y, int64_t n, cudaStream_t stream) {
    launch_map1(x, y, n, GeluForward{}, stream);
}

void gelu_backward(const bfloat16* x, const bfloat16* dy, bfloat16* dx, int64_t n, cudaStream_t stream) {
    launch_map2(x, dy, dx, n, GeluBackward{}, stream);
}

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
    launch_map1(x, y, n, ReluForward{}, stream);
}

void relu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
    launch_map2(x, dy, dx, n, ReluBackward{}, stream);
}

void gelu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
    launch_map1(x, y, n, GeluForward{}, stream);
}

void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
    launch_map2(x, dy, dx, n, GeluBackward{}, stream);
}

}  // namespace mp::kernels::cuda
