// Basic differentiable functions: add, scale, reshape, linear (and linear + GELU, fused) and
// batched matmul.
#include <memory>

#include "autograd/functions.h"
#include "tensor/ops/activations.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/gemm.h"
#include "tensor/ops/linear.h"

namespace mp::fn {

using autograd::Grads;
using autograd::TensorRef;

Tensor add(const Tensor& a, const Tensor& b) {
    Tensor y = ops::add(a, b);
    autograd::record("add", {a, b}, {y}, [ra = TensorRef(a), rb = TensorRef(b)](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(ra, dy[0]);
        g.accumulate(rb, dy[0]);
    });
    return y;
}

Tensor scale(const Tensor& x, double s) {
    Tensor y = ops::scale(x, s);
    autograd::record("scale", {x}, {y}, [rx = TensorRef(x), s](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(rx, ops::scale(dy[0], s));
    });
    return y;
}

Tensor mul(const Tensor& a, const Tensor& b) {
    Tensor y = ops::mul(a, b);
    autograd::record("mul", {a, b}, {y}, [a, b](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(a, ops::mul(dy[0], b));
        g.accumulate(b, ops::mul(dy[0], a));
    });
    return y;
}

Tensor sum(const Tensor& x) {
    Tensor y = ops::sum(x);
    autograd::record("sum", {x}, {y}, [rx = TensorRef(x)](Grads& g, const std::vector<Tensor>& dy) {
        const Tensor& dsum = dy[0];
        g.accumulate(rx, ops::broadcast_scalar(dsum, rx.shape));  // on the device: no host wait
    });
    return y;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
    Tensor y = x.reshape(shape);
    autograd::record("reshape", {x}, {y}, [rx = TensorRef(x)](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(rx, dy[0].reshape(rx.shape));
    });
    return y;
}

namespace {

// The W half of a linear layer's backward from the gradient of its (pre-activation) output:
// dW += dyᵀ·x and db += Σ_rows dy, accumulated in place into the parameters' slots (float32
// masters take bfloat16 products unrounded), or into `g` when they are not parameters.
void linear_weight_grads(Grads& g, const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& dy) {
    if (!autograd::accumulate_into_slot(weight, [&](Tensor& grad, bool acc) { ops::weight_grad_(grad, dy, x, acc); }))
        g.accumulate(weight, ops::matmul(dy, x, true, false));
    if (bias.defined() &&
        !autograd::accumulate_into_slot(bias, [&](Tensor& grad, bool acc) { ops::bias_grad_(grad, dy, acc); }))
        g.accumulate(bias, ops::sum_rows(dy));
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    Tensor y = ops::linear(x, weight, bias);  // the bias fused into the GEMM's epilogue
    std::vector<Tensor> inputs = {x, weight};
    if (bias.defined()) inputs.push_back(bias);
    // I: dx = dy · W (skipped when nobody wants it, e.g. for a stage's raw batch).
    // W: dW += dyᵀ · x and db += Σ_rows dy, in place — it keeps x alive until it runs.
    autograd::record(
        "linear", inputs, {y},
        [rx = TensorRef(x), weight](Grads& g, const std::vector<Tensor>& dy) {
            if (g.wants(rx)) g.accumulate(rx, ops::matmul(dy[0], weight));
        },
        [x, weight, bias](Grads& g, const std::vector<Tensor>& dy) { linear_weight_grads(g, x, weight, bias, dy[0]); });
    return y;
}

Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    auto [y, pre] = ops::linear_gelu(x, weight, bias);  // bias and GELU fused into the GEMM's epilogue
    // I computes the pre-activation's gradient once and leaves it to W.
    auto dpre = std::make_shared<Tensor>();
    autograd::record(
        "linear_gelu", {x, weight, bias}, {y},
        [rx = TensorRef(x), weight, pre = pre, dpre](Grads& g, const std::vector<Tensor>& dy) {
            *dpre = ops::gelu_backward(pre, dy[0]);
            if (g.wants(rx)) g.accumulate(rx, ops::matmul(*dpre, weight));
        },
        [x, weight, bias, dpre](Grads& g, const std::vector<Tensor>&) {
            linear_weight_grads(g, x, weight, bias, *dpre);
            *dpre = Tensor();
        },
        /*weight_reads_output_grads=*/false);  // W needs dpre, not dy: dy is not kept until W
    return y;
}

Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha) {
    Tensor c = ops::bmm(a, b, trans_a, trans_b, alpha);
    autograd::record("bmm", {a, b}, {c}, [a, b, trans_a, trans_b, alpha](Grads& g, const std::vector<Tensor>& dy) {
        const Tensor& dc = dy[0];
        // C = α·op(A)·op(B): dop(A) = α·dC·op(B)ᵀ and dop(B) = α·op(A)ᵀ·dC, transposed back where needed.
        g.accumulate(a, trans_a ? ops::bmm(b, dc, trans_b, true, alpha) : ops::bmm(dc, b, false, !trans_b, alpha));
        g.accumulate(b, trans_b ? ops::bmm(dc, a, true, trans_a, alpha) : ops::bmm(a, dc, !trans_a, false, alpha));
    });
    return c;
}

}  // namespace mp::fn
