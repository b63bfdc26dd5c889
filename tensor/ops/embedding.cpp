// Embedding ops: argument checks, the id range check on either device, output allocation, and
// dispatch to the CPU reference or the CUDA kernels (whose sort workspace is allocated here).
#include "tensor/ops/embedding.h"

#include <cstring>
#include <vector>

#include "kernels/embedding.h"
#include "tensor/ops/common.h"

namespace mp::ops {

namespace {

void require_id_in_range(const char* op, int64_t id, int64_t position, const Tensor& ids, int64_t num_embeddings) {
    MP_REQUIRE(id >= 0 && id < num_embeddings, op, ": id ", id, " at position ", position, " of ids ",
               shape_str(ids.shape()), " is out of range [0, ", num_embeddings, ")");
}

// Throws naming the first id outside [0, num_embeddings). On the CPU a plain scan. On CUDA a
// small kernel finds the first bad position on the device and only its 8-byte result is copied
// back (copying all the ids instead would move 4 B per id over PCIe for the same answer). Either
// way the host must wait for the stream once per call (the copy synchronises it): that stall is
// the price of reporting a bad id as an exception instead of an illegal memory access. The bad
// id itself is read back only on the error path.
void check_ids_in_range(const char* op, const Tensor& ids, int64_t num_embeddings) {
    const int64_t n = ids.numel();
    if (n == 0) return;
    if (ids.device().is_cpu()) {
        const int32_t* values = ids.data<int32_t>();
        for (int64_t position = 0; position < n; ++position)
            require_id_in_range(op, values[position], position, ids, num_embeddings);
    } else {
        MP_ON_CUDA({
            // Tensor has no 64-bit integer dtype: two int32 elements hold the unsigned 64-bit result.
            Tensor first_bad = Tensor::empty({2}, DType::Int32, ids.device());
            kernels::cuda::embedding_first_out_of_range(ids.data<int32_t>(), n, num_embeddings,
                                                        static_cast<unsigned long long*>(first_bad.raw_data()),
                                                        detail::stream_of(ids));
            std::vector<int32_t> words = first_bad.to_vector<int32_t>();
            unsigned long long position = 0;
            static_assert(sizeof(position) == 2 * sizeof(int32_t), "two int32 words hold the position");
            std::memcpy(&position, words.data(), sizeof(position));
            if (position == ~0ULL) return;  // every id in range
            const int64_t bad = static_cast<int64_t>(position);
            const int32_t id = ids.reshape({n}).slice(bad, bad + 1).to_vector<int32_t>()[0];
            require_id_in_range(op, id, bad, ids, num_embeddings);
        });
    }
}

}  // namespace

Tensor embedding(const Tensor& ids, const Tensor& weight) {
    const char* op = "embedding";
    detail::require_defined(op, ids, "ids");
    detail::require_defined(op, weight, "weight");
    detail::require_dtype(op, ids, DType::Int32, "ids");
    detail::require_float(op, weight);
    MP_REQUIRE(weight.dim() == 2, op, ": weight must be (num_embeddings, dim), got shape ", shape_str(weight.shape()));
    detail::require_same_device(op, {&ids, &weight});
    const int64_t num_embeddings = weight.size(0);
    const int64_t dim = weight.size(1);
    check_ids_in_range(op, ids, num_embeddings);

    Shape out_shape = ids.shape();
    out_shape.push_back(dim);
    Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
    const int64_t n = ids.numel();
    if (weight.device().is_cpu()) {
        if (weight.dtype() == DType::Float64)
            kernels::cpu::embedding_forward(ids.data<int32_t>(), weight.data<double>(), out.data<double>(), n, dim);
        else
            kernels::cpu::embedding_forward(ids.data<int32_t>(), weight.data<float>(), out.data<float>(), n, dim);
    } else {
        MP_ON_CUDA(kernels::cuda::embedding_forward(ids.data<int32_t>(), weight.data<float>(), out.data<float>(), n,
                                                    dim, detail::stream_of(weight)));
    }
    return out;
}

Tensor embedding_backward(const Tensor& ids, const Tensor& dout, int64_t num_embeddings) {
    const char* op = "embedding_backward";
    detail::require_defined(op, ids, "ids");
    detail::require_defined(op, dout, "dout");
    detail::require_dtype(op, ids, DType::Int32, "ids");
    detail::require_float(op, dout);
    detail::require_same_device(op, {&ids, &dout});
    MP_REQUIRE(num_embeddings >= 0, op, ": num_embeddings must be >= 0, got ", num_embeddings);
    const bool leading_dims_match =
        dout.dim() == ids.dim() + 1 && Shape(dout.shape().begin(), dout.shape().end() - 1) == ids.shape();
    MP_REQUIRE(leading_dims_match, op, ": dout has shape ", shape_str(dout.shape()), ", expected ids' shape ",
               shape_str(ids.shape()), " followed by the embedding dim");
    check_ids_in_range(op, ids, num_embeddings);

    const int64_t n = ids.numel();
    const int64_t dim = dout.shape().back();
    Tensor dweight = Tensor::empty({num_embeddings, dim}, dout.dtype(), dout.device());
    if (dout.device().is_cpu()) {
        if (dout.dtype() == DType::Float64)
            kernels::cpu::embedding_backward(ids.data<int32_t>(), dout.data<double>(), dweight.data<double>(), n,
                                             num_embeddings, dim);
        else
            kernels::cpu::embedding_backward(ids.data<int32_t>(), dout.data<float>(), dweight.data<float>(), n,
                                             num_embeddings, dim);
    } else {
        MP_ON_CUDA({
            // Int32 elements as a byte buffer: the workspace is raw scratch for the sort.
            const size_t workspace_bytes = kernels::cuda::embedding_backward_workspace_bytes(n, num_embeddings);
            Tensor workspace = Tensor::empty({static_cast<int64_t>((workspace_bytes + 3) / 4)}, DType::Int32,
                                             dout.device());
            kernels::cuda::embedding_backward(ids.data<int32_t>(), dout.data<float>(), dweight.data<float>(), n,
                                              num_embeddings, dim, workspace.raw_data(), workspace_bytes,
                                              detail::stream_of(dout));
        });
    }
    return dweight;
}

}  // namespace mp::ops
