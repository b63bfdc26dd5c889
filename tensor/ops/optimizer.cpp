// The optimizer ops: argument checks (buffers matching the parameter, hyper-parameter ranges,
// each message naming the op and the value), then dispatch to the CPU or CUDA kernels.
#include "tensor/ops/optimizer.h"

#include "kernels/optimizer.h"
#include "tensor/ops/common.h"

namespace mp::ops {

namespace {

// `buffer` is updated or read alongside `param`: same element count, dtype and device.
void require_matches_param(const char* op, const Tensor& param, const Tensor& buffer, const char* name) {
    detail::require_defined(op, buffer, name);
    MP_REQUIRE(buffer.numel() == param.numel(), op, ": ", name, " ", buffer.describe(), " has ", buffer.numel(),
               " elements, expected ", param.numel(), " to match param ", param.describe());
    MP_REQUIRE(buffer.dtype() == param.dtype(), op, ": ", name, " is ", buffer.describe(), ", expected ",
               dtype_name(param.dtype()), " to match param ", param.describe());
    MP_REQUIRE(buffer.device() == param.device(), op, ": ", name, " is ", buffer.describe(), ", expected ",
               param.device().str(), " to match param ", param.describe());
}

void require_param(const char* op, const Tensor& param) {
    detail::require_defined(op, param, "param");
    detail::require_float(op, param);
}

}  // namespace

void sgd_step_(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, double lr, double momentum,
               double weight_decay, bool first_step) {
    const char* op = "sgd_step_";
    require_param(op, param);
    require_matches_param(op, param, grad, "grad");
    const bool has_momentum = momentum != 0.0;
    if (has_momentum) {
        MP_REQUIRE(momentum_buffer.defined(), op, ": momentum is ", momentum,
                   " but momentum_buffer is an undefined tensor (it needs param's ", param.numel(), " elements)");
        require_matches_param(op, param, momentum_buffer, "momentum_buffer");
    }
    MP_REQUIRE(lr >= 0.0, op, ": lr must be >= 0, got ", lr);
    MP_REQUIRE(momentum >= 0.0, op, ": momentum must be >= 0, got ", momentum);
    MP_REQUIRE(weight_decay >= 0.0, op, ": weight_decay must be >= 0, got ", weight_decay);

    const int64_t n = param.numel();
    if (param.device().is_cpu()) {
        if (param.dtype() == DType::Float64) {
            kernels::cpu::sgd_step(param.data<double>(), grad.data<double>(),
                                   has_momentum ? momentum_buffer.data<double>() : nullptr, n, lr, momentum,
                                   weight_decay, first_step);
        } else {
            kernels::cpu::sgd_step(param.data<float>(), grad.data<float>(),
                                   has_momentum ? momentum_buffer.data<float>() : nullptr, n, lr, momentum,
                                   weight_decay, first_step);
        }
    } else {
        MP_ON_CUDA(kernels::cuda::sgd_step(param.data<float>(), grad.data<float>(),
                                           has_momentum ? momentum_buffer.data<float>() : nullptr, n, lr, momentum,
                                           weight_decay, first_step, detail::stream_of(param)));
    }
}

namespace {
void check_adamw_hyperparameters(const char* op, int64_t step, double lr, double beta1, double beta2, double eps,
                                 double weight_decay) {
    MP_REQUIRE(step >= 1, op, ": step is 1-based (the first update is step 1), got ", step);
    MP_REQUIRE(lr >= 0.0, op, ": lr must be >= 0, got ", lr);
    MP_REQUIRE(beta1 >= 0.0 && beta1 < 1.0, op, ": beta1 must be in [0, 1), got ", beta1);
    MP_REQUIRE(beta2 >= 0.0 && beta2 < 1.0, op, ": beta2 must be in [0, 1), got ", beta2);
    MP_REQUIRE(eps > 0.0, op, ": eps must be > 0, got ", eps);
    MP_REQUIRE(weight_decay >= 0.0, op, ": weight_decay must be >= 0, got ", weight_decay);
}
}  // namespace

void adamw_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, int64_t step, double lr,
                 double beta1, double beta2, double eps, double weight_decay) {
    const char* op = "adamw_step_";
    require_param(op, param);
    require_matches_param(op, param, grad, "grad");
    require_matches_param(op, param, exp_avg, "exp_avg");
    require_matches_param(op, param, exp_avg_sq, "exp_avg_sq");
    check_adamw_hyperparameters(op, step, lr, beta1, beta2, eps, weight_decay);

    const int64_t n = param.numel();
    if (param.device().is_cpu()) {
        if (param.dtype() == DType::Float64) {
            kernels::cpu::adamw_step(param.data<double>(), grad.data<double>(), exp_avg.data<double>(),
                                     exp_avg_sq.data<double>(), n, step, lr, beta1, beta2, eps, weight_decay);
        } else {
            kernels::cpu::adamw_step(param.data<float>(), grad.data<float>(), exp_avg.data<float>(),
                                     exp_avg_sq.data<float>(), n, step, lr, beta1, beta2, eps, weight_decay);
        }
    } else {
        MP_ON_CUDA(kernels::cuda::adamw_step(param.data<float>(), grad.data<float>(), exp_avg.data<float>(),
                                             exp_avg_sq.data<float>(), n, step, lr, beta1, beta2, eps, weight_decay,
                                             detail::stream_of(param)));
    }
}

void adamw_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs, int64_t step, double lr,
                 double beta1, double beta2, double eps, double weight_decay) {
    const char* op = "adamw_step_ (list)";
    MP_REQUIRE(grads.size() == params.size() && exp_avgs.size() == params.size() &&
                   exp_avg_sqs.size() == params.size(),
               op, ": the lists must have one entry per parameter: ", params.size(), " params, ", grads.size(),
               " grads, ", exp_avgs.size(), " exp_avgs, ", exp_avg_sqs.size(), " exp_avg_sqs");
    check_adamw_hyperparameters(op, step, lr, beta1, beta2, eps, weight_decay);
    for (size_t i = 0; i < params.size(); ++i) {
        const std::string name = str(op, " entry ", i);
        require_param(name.c_str(), params[i]);
        require_matches_param(name.c_str(), params[i], grads[i], "grad");
        require_matches_param(name.c_str(), params[i], exp_avgs[i], "exp_avg");
        require_matches_param(name.c_str(), params[i], exp_avg_sqs[i], "exp_avg_sq");
    }
    std::vector<kernels::AdamWBuffers> on_cuda;
    Device cuda_device = Device::cpu();
    for (size_t i = 0; i < params.size(); ++i) {
        const bool multi = !params[i].device().is_cpu() && params[i].dtype() == DType::Float32 &&
                           (on_cuda.empty() || params[i].device() == cuda_device);
        if (!multi) {
            Tensor param = params[i], exp_avg = exp_avgs[i], exp_avg_sq = exp_avg_sqs[i];  // handles: in place
            adamw_step_(param, grads[i], exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay);
            continue;
        }
        cuda_device = params[i].device();
        on_cuda.push_back({params[i].data<float>(), grads[i].data<float>(), exp_avgs[i].data<float>(),
                           exp_avg_sqs[i].data<float>(), params[i].numel()});
    }
    if (on_cuda.empty()) return;
    MP_ON_CUDA(kernels::cuda::adamw_step_multi_tensor(on_cuda.data(), static_cast<int64_t>(on_cuda.size()), step, lr,
                                                      beta1, beta2, eps, weight_decay,
                                                      compute_stream(cuda_device.index)));
}

}  // namespace mp::ops
