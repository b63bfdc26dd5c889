// Basic differentiable functions: add, scale, reshape, linear and batched matmul.
#include "autograd/functions.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/gemm.h"

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

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    Tensor y = ops::matmul(x, weight, false, true);
    if (bias.defined()) y = ops::bias_add(y, bias);
    std::vector<Tensor> inputs = {x, weight};
    if (bias.defined()) inputs.push_back(bias);
    // I: dx = dy · W (skipped when nobody wants it, e.g. for a stage's raw batch).
    // W: dW = dyᵀ · x and db = Σ_rows dy — it keeps x alive until it runs.
    autograd::record(
        "linear", inputs, {y},
        [rx = TensorRef(x), weight](Grads& g, const std::vector<Tensor>& dy) {
            if (g.wants(rx)) g.accumulate(rx, ops::matmul(dy[0], weight));
        },
        [x, rw = TensorRef(weight), rb = bias.defined() ? TensorRef(bias) : TensorRef()](Grads& g, const std::vector<Tensor>& dy) {
            g.accumulate(rw, ops::matmul(dy[0], x, true, false));
            if (rb.id != 0) g.accumulate(rb, ops::sum_rows(dy[0]));
        });
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
