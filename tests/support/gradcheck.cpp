// The float64 finite-difference gradient checker.
#include "tests/support/gradcheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "autograd/functions.h"
#include "autograd/tape.h"

namespace mp::testing {

Tensor weighted_sum(const Tensor& y, uint64_t seed) {
    Generator gen(seed);
    Tensor w = Tensor::randn(y.shape(), gen, 0.0, 1.0, y.dtype(), y.device());
    return fn::sum(fn::mul(y, w));
}

void gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
               const std::string& what, double h, double tolerance) {
    for (Tensor& x : inputs) {
        ASSERT_TRUE(x.device().is_cpu()) << what << ": gradcheck runs on the CPU";
        ASSERT_TRUE(x.dtype() == DType::Float64 || x.dtype() == DType::Int32) << what << ": inputs must be float64";
        if (autograd::is_parameter(x)) autograd::zero_grad(x);
    }
    // Analytic gradients from one backward pass.
    autograd::Tape tape;
    {
        autograd::TapeScope scope(tape);
        Tensor loss = f(inputs);
        ASSERT_EQ(loss.numel(), 1) << what;
        tape.backward(loss);
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
        Tensor& x = inputs[i];
        if (x.dtype() != DType::Float64) continue;
        Tensor analytic = autograd::is_parameter(x) ? autograd::grad_of(x) : tape.grad(x);
        ASSERT_TRUE(analytic.defined()) << what << ": no gradient reached input " << i;
        ASSERT_EQ(analytic.shape(), x.shape()) << what;
        std::vector<double> a = analytic.to_vector<double>();
        double* values = x.data<double>();
        double worst = 0;
        int64_t worst_index = 0;
        double worst_numeric = 0;
        autograd::NoGradScope no_grad;
        for (int64_t j = 0; j < x.numel(); ++j) {
            double saved = values[j];
            values[j] = saved + h;
            double plus = f(inputs).item();
            values[j] = saved - h;
            double minus = f(inputs).item();
            values[j] = saved;
            double numeric = (plus - minus) / (2 * h);
            double error = std::fabs(numeric - a[j]) / std::max({1.0, std::fabs(numeric), std::fabs(a[j])});
            if (error > worst || std::isnan(error)) worst = error, worst_index = j, worst_numeric = numeric;
        }
        EXPECT_LE(worst, tolerance) << what << ": input " << i << " " << x.describe() << " worst at element "
                                    << worst_index << ": analytic " << a[worst_index] << ", numeric " << worst_numeric;
    }
}

}  // namespace mp::testing
