// matmul, matmul_into and bmm: check the operands, work out the GEMM sizes and row strides of
// the tensors read as matrices, and dispatch to kernels::cpu (float32 or float64) or
// kernels::cuda (float32, exact or TF32 per mp::matmul_precision(); bfloat16 with float32 accumulation).
#include "tensor/ops/gemm.h"

#include <string>

#include "kernels/gemm.h"
#include "tensor/ops/common.h"

namespace mp::ops {

namespace {

// The sizes of C[m, n] = op(A)[m, k] * op(B)[k, n] and the row strides of A and B as stored
// (contiguous, so each is its matrix's column count).
struct GemmSizes {
    int64_t m = 0;
    int64_t n = 0;
    int64_t k = 0;
    int64_t lda = 0;
    int64_t ldb = 0;
};

// Rows of a tensor read as a matrix over its last dim: the product of the other dims (so a
// (4, 0) tensor still has 4 rows).
int64_t leading_rows(const Tensor& t) { return shape_numel(Shape(t.shape().begin(), t.shape().end() - 1)); }

std::string operand_str(const char* name, const Tensor& t, bool transposed) {
    return str(name, " ", shape_str(t.shape()), transposed ? " [transposed]" : " [not transposed]");
}

// Sizes for operands read as (a_rows, a_cols) and (b_rows, b_cols) matrices; the inner
// dimensions of op(a) and op(b) must agree.
GemmSizes gemm_sizes(const char* op, const Tensor& a, int64_t a_rows, int64_t a_cols, bool trans_a, const Tensor& b,
                     int64_t b_rows, int64_t b_cols, bool trans_b) {
    GemmSizes sizes;
    sizes.m = trans_a ? a_cols : a_rows;
    sizes.k = trans_a ? a_rows : a_cols;
    sizes.n = trans_b ? b_rows : b_cols;
    const int64_t b_inner = trans_b ? b_cols : b_rows;
    MP_REQUIRE(sizes.k == b_inner, op, ": ", operand_str("a", a, trans_a), " has ", sizes.k, " columns but ",
               operand_str("b", b, trans_b), " has ", b_inner, " rows");
    sizes.lda = a_cols;
    sizes.ldb = b_cols;
    return sizes;
}

void check_operands(const char* op, const Tensor& a, const Tensor& b) {
    detail::require_defined(op, a, "a");
    detail::require_defined(op, b, "b");
    detail::require_floating(op, a, detail::floating_on(a.device()));
    detail::require_same_dtype(op, {&a, &b});
    detail::require_same_device(op, {&a, &b});
}

// Sizes of a matmul: both operands read as matrices over their last dim.
GemmSizes matmul_sizes(const char* op, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
    check_operands(op, a, b);
    detail::require_rank_at_least(op, a, 1, "a");
    detail::require_rank_at_least(op, b, 1, "b");
    return gemm_sizes(op, a, leading_rows(a), detail::last_dim(a), trans_a, b, leading_rows(b), detail::last_dim(b),
                      trans_b);
}

bool allow_tf32() { return matmul_precision() == MatmulPrecision::TF32; }

// out[m, n] (row stride n) = alpha * op(a) * op(b) + beta * out.
void run_gemm(const GemmSizes& s, bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b,
              double beta, Tensor& out) {
    dispatch_floating("gemm", a.dtype(), detail::floating_on(a.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        using C = compute_t<T>;  // alpha and beta: float32 for bfloat16
        if (a.device().is_cpu()) {
            kernels::cpu::gemm(trans_a, trans_b, s.m, s.n, s.k, static_cast<C>(alpha), a.data<T>(), s.lda, b.data<T>(),
                               s.ldb, static_cast<C>(beta), out.data<T>(), s.n, allow_tf32());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::gemm(trans_a, trans_b, s.m, s.n, s.k, static_cast<float>(alpha), a.data<T>(),
                                           s.lda, b.data<T>(), s.ldb, static_cast<float>(beta), out.data<T>(), s.n,
                                           allow_tf32(), detail::stream_of(a)));
        }
    });
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha) {
    const GemmSizes sizes = matmul_sizes("matmul", a, b, trans_a, trans_b);
    Shape out_shape{sizes.m, sizes.n};
    if (!trans_a && a.dim() > 2) {
        out_shape.assign(a.shape().begin(), a.shape().end() - 1);
        out_shape.push_back(sizes.n);
    }
    Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
    run_gemm(sizes, trans_a, trans_b, alpha, a, b, 0.0, out);
    return out;
}

void matmul_into(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha,
                 double beta) {
    const GemmSizes sizes = matmul_sizes("matmul_into", a, b, trans_a, trans_b);
    detail::require_defined("matmul_into", out, "out");
    const bool mixed = a.dtype() == DType::BFloat16 && out.dtype() == DType::Float32;
    if (!mixed) detail::require_same_dtype("matmul_into", {&a, &out});
    detail::require_same_device("matmul_into", {&a, &out});
    detail::require_rank_at_least("matmul_into", out, 1, "out");
    MP_REQUIRE(leading_rows(out) == sizes.m && detail::last_dim(out) == sizes.n, "matmul_into: out ",
               shape_str(out.shape()), " reads as a (", leading_rows(out), ", ", detail::last_dim(out),
               ") matrix but the product is (", sizes.m, ", ", sizes.n, ")");
    MP_REQUIRE(!out.shares_storage_with(a) && !out.shares_storage_with(b),
               "matmul_into: out shares storage with ", out.shares_storage_with(a) ? "a" : "b",
               "; the product cannot be written over its own input");
    if (!mixed) {
        run_gemm(sizes, trans_a, trans_b, alpha, a, b, beta, out);
    } else if (a.device().is_cpu()) {
        kernels::cpu::gemm(trans_a, trans_b, sizes.m, sizes.n, sizes.k, static_cast<float>(alpha), a.data<bfloat16>(),
                           sizes.lda, b.data<bfloat16>(), sizes.ldb, static_cast<float>(beta), out.data<float>(),
                           sizes.n, false);
    } else {
        MP_ON_CUDA(kernels::cuda::gemm(trans_a, trans_b, sizes.m, sizes.n, sizes.k, static_cast<float>(alpha),
                                       a.data<bfloat16>(), sizes.lda, b.data<bfloat16>(), sizes.ldb,
                                       static_cast<float>(beta), out.data<float>(), sizes.n, false,
                                       detail::stream_of(a)));
    }
}

Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha) {
    check_operands("bmm", a, b);
    detail::require_rank_at_least("bmm", a, 3, "a");
    detail::require_rank_at_least("bmm", b, 3, "b");
    const Shape batch_dims(a.shape().begin(), a.shape().end() - 2);
    const Shape b_batch_dims(b.shape().begin(), b.shape().end() - 2);
    MP_REQUIRE(batch_dims == b_batch_dims, "bmm: batch dims differ: a ", shape_str(a.shape()), " has ",
               shape_str(batch_dims), ", b ", shape_str(b.shape()), " has ", shape_str(b_batch_dims));
    const GemmSizes s = gemm_sizes("bmm", a, a.size(-2), a.size(-1), trans_a, b, b.size(-2), b.size(-1), trans_b);

    Shape out_shape = batch_dims;
    out_shape.push_back(s.m);
    out_shape.push_back(s.n);
    Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());

    const int64_t batch = shape_numel(batch_dims);
    const int64_t stride_a = a.size(-2) * a.size(-1);
    const int64_t stride_b = b.size(-2) * b.size(-1);
    const int64_t stride_c = s.m * s.n;
    dispatch_floating("bmm", a.dtype(), detail::floating_on(a.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        using C = compute_t<T>;
        if (a.device().is_cpu()) {
            kernels::cpu::gemm_strided_batched(trans_a, trans_b, s.m, s.n, s.k, static_cast<C>(alpha), a.data<T>(),
                                               s.lda, stride_a, b.data<T>(), s.ldb, stride_b, C(0), out.data<T>(), s.n,
                                               stride_c, batch, allow_tf32());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::gemm_strided_batched(trans_a, trans_b, s.m, s.n, s.k, static_cast<float>(alpha),
                                                           a.data<T>(), s.lda, stride_a, b.data<T>(), s.ldb, stride_b,
                                                           0.0f, out.data<T>(), s.n, stride_c, batch, allow_tf32(),
                                                           detail::stream_of(a)));
        }
    });
    return out;
}

}  // namespace mp::ops
