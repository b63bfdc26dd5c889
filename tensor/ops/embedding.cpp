// Embedding ops: argument checks, the id range check on either device (queued on the GPU, never
// waited for here), output allocation, and dispatch to the CPU reference or the CUDA kernels
// (whose sort workspace is allocated here).
#include "tensor/ops/embedding.h"

#include <string>

#include "kernels/embedding.h"
#include "tensor/device_checks.h"
#include "tensor/ops/common.h"
#include "tensor/ops/elementwise.h"

namespace mp::ops {

namespace {

// Throws (or, on CUDA, queues the check that will throw; tensor/device_checks.h) naming the first
// id outside [0, num_embeddings). Queuing keeps the host from waiting for the GPU on every call.
void check_ids_in_range(const char* op, const Tensor& ids, int64_t num_embeddings) {
    const std::string op_name = op;
    const Shape shape = ids.shape();
    check_index_range(ids, 0, num_embeddings, kernels::kNoExemptValue, [op_name, shape, num_embeddings](int64_t position, int32_t id) {
        return str(op_name, ": id ", id, " at position ", position, " of ids ", shape_str(shape), " is out of range [0, ",
                   num_embeddings, ")");
    });
}

}  // namespace

Tensor embedding(const Tensor& ids, const Tensor& weight) {
    const char* op = "embedding";
    detail::require_defined(op, ids, "ids");
    detail::require_defined(op, weight, "weight");
    detail::require_dtype(op, ids, DType::Int32, "ids");
    detail::require_floating(op, weight);
    MP_REQUIRE(weight.dim() == 2, op, ": weight must be (num_embeddings, dim), got shape ", shape_str(weight.shape()));
    detail::require_same_device(op, {&ids, &weight});
    const int64_t num_embeddings = weight.size(0);
    const int64_t dim = weight.size(1);
    check_ids_in_range(op, ids, num_embeddings);

    Shape out_shape = ids.shape();
    out_shape.push_back(dim);
    Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
    const int64_t n = ids.numel();
    dispatch_floating(op, weight.dtype(), detail::floating_on(weight.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (weight.device().is_cpu()) {
            kernels::cpu::embedding_forward(ids.data<int32_t>(), weight.data<T>(), out.data<T>(), n, dim);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::embedding_forward(ids.data<int32_t>(), weight.data<T>(), out.data<T>(), n,
                                                        num_embeddings, dim, detail::stream_of(weight)));
        }
    });
    return out;
}

void embedding_backward_(Tensor& dweight, const Tensor& ids, const Tensor& dout, bool accumulate) {
    const char* op = "embedding_backward";
    detail::require_defined(op, ids, "ids");
    detail::require_defined(op, dout, "dout");
    detail::require_defined(op, dweight, "dweight");
    detail::require_dtype(op, ids, DType::Int32, "ids");
    detail::require_floating(op, dout);
    detail::require_same_device(op, {&ids, &dout, &dweight});
    const bool leading_dims_match =
        dout.dim() == ids.dim() + 1 && Shape(dout.shape().begin(), dout.shape().end() - 1) == ids.shape();
    MP_REQUIRE(leading_dims_match, op, ": dout has shape ", shape_str(dout.shape()), ", expected ids' shape ",
               shape_str(ids.shape()), " followed by the embedding dim");
    const int64_t dim = dout.shape().back();
    MP_REQUIRE(dweight.dim() == 2 && dweight.size(1) == dim, op, ": dweight ", dweight.describe(),
               " must be (num_embeddings, ", dim, ") for dout ", dout.describe());
    const bool mixed = dout.dtype() == DType::BFloat16 && dweight.dtype() == DType::Float32;
    if (!mixed) detail::require_same_dtype(op, {&dout, &dweight});
    const int64_t num_embeddings = dweight.size(0);
    check_ids_in_range(op, ids, num_embeddings);

    const int64_t n = ids.numel();
    dispatch_floating(op, dout.dtype(), detail::floating_on(dout.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        auto run = [&](auto* grad) {
            if (dout.device().is_cpu()) {
                kernels::cpu::embedding_backward_into(ids.data<int32_t>(), dout.data<T>(), grad, n, num_embeddings,
                                                      dim, accumulate);
            } else if constexpr (detail::kHasCudaKernels<T>) {
                MP_ON_CUDA({
                    // Int32 elements as a byte buffer: the workspace is raw scratch for the sort.
                    const size_t bytes = kernels::cuda::embedding_backward_workspace_bytes(n, num_embeddings);
                    Tensor workspace = Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}, DType::Int32,
                                                     dout.device());
                    kernels::cuda::embedding_backward(ids.data<int32_t>(), dout.data<T>(), grad, n, num_embeddings,
                                                      dim, accumulate, workspace.raw_data(), bytes,
                                                      detail::stream_of(dout));
                });
            }
        };
        if constexpr (std::is_same_v<T, bfloat16>) {
            if (mixed) run(dweight.data<float>());
            else run(dweight.data<bfloat16>());
        } else {
            run(dweight.data<T>());
        }
    });
}

Tensor embedding_backward(const Tensor& ids, const Tensor& dout, int64_t num_embeddings) {
    MP_REQUIRE(num_embeddings >= 0, "embedding_backward: num_embeddings must be >= 0, got ", num_embeddings);
    detail::require_defined("embedding_backward", dout, "dout");
    Tensor dweight = Tensor::empty({num_embeddings, dout.dim() > 0 ? dout.shape().back() : 0}, dout.dtype(),
                                   dout.device());
    embedding_backward_(dweight, ids, dout, false);
    return dweight;
}

}  // namespace mp::ops
