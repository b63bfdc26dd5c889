// Fused causal attention (cuDNN SDPA): on the CPU, the graph key, the strided layouts against the
// layout ops, the support reasons, the path switch and its errors; on a GPU, the fused forward and
// backward against the composed attention in float64 within bounds derived from bfloat16's 2^-8.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>
#include <vector>

#include "autograd/functions.h"
#include "kernels/attention_fused.h"
#include "tensor/device_context.h"
#include "tensor/ops/attention_fused.h"
#include "tensor/ops/attention_layout.h"
#include "tests/support/test_util.h"

using namespace mp;
using kernels::SdpaKey;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;
using mp::testing::random_tensor;
using mp::testing::to_doubles;

namespace {

SdpaKey key_of(int64_t batch, int64_t heads, int64_t seq, int64_t head_dim) {
    SdpaKey key;
    key.batch = batch;
    key.heads = heads;
    key.seq = seq;
    key.head_dim = head_dim;
    return key;
}

// The names of the entries `fn` records on a fresh tape.
template <typename Fn>
std::vector<std::string> recorded(Fn&& fn) {
    autograd::Tape tape;
    autograd::TapeScope scope(tape);
    fn();
    return tape.entry_names();
}

}  // namespace

// ---------------------------------------------------------------- CPU: key, layout, support, switch

TEST(AttentionFusedKey, EqualityHashAndDescription) {
    const SdpaKey base = key_of(3, 4, 37, 64);
    EXPECT_EQ(base, key_of(3, 4, 37, 64));
    EXPECT_EQ(kernels::SdpaKeyHash{}(base), kernels::SdpaKeyHash{}(key_of(3, 4, 37, 64)));
    // Every field takes part: changing any one gives a different key (and here a different hash).
    std::vector<SdpaKey> variants = {key_of(4, 4, 37, 64), key_of(3, 5, 37, 64), key_of(3, 4, 38, 64),
                                     key_of(3, 4, 37, 128)};
    SdpaKey nondeterministic = base;
    nondeterministic.deterministic = false;
    variants.push_back(nondeterministic);
    std::unordered_set<size_t> hashes{kernels::SdpaKeyHash{}(base)};
    for (const SdpaKey& other : variants) {
        EXPECT_NE(base, other) << other.str();
        hashes.insert(kernels::SdpaKeyHash{}(other));
    }
    EXPECT_EQ(hashes.size(), variants.size() + 1);
    // Transposed values (B <-> H) are different problems with different hashes.
    EXPECT_NE(kernels::SdpaKeyHash{}(key_of(3, 4, 37, 64)), kernels::SdpaKeyHash{}(key_of(4, 3, 37, 64)));
    EXPECT_EQ(base.str(), "B=3 H=4 T=37 D=64 bfloat16 deterministic");
    EXPECT_EQ(nondeterministic.str(), "B=3 H=4 T=37 D=64 bfloat16 nondeterministic");
}

// The strides handed to cuDNN address, inside qkv, exactly the elements split_qkv_heads copies out,
// and inside the output, exactly where merge_heads puts each head's row.
TEST(AttentionFusedLayout, StridesAddressWhatTheLayoutOpsCopy) {
    const int64_t batch = 2, heads = 3, seq = 5, head_dim = 4, channels = heads * head_dim;
    const SdpaKey key = key_of(batch, heads, seq, head_dim);
    const kernels::SdpaLayout layout = kernels::sdpa_layout(key);
    Tensor qkv = Tensor::arange(batch * seq * 3 * channels, DType::Float32).reshape({batch, seq, 3 * channels});
    std::array<Tensor, 3> split = ops::split_qkv_heads(qkv, heads);
    const std::vector<float> flat = qkv.to_vector<float>();
    const kernels::SdpaOperand* operands[3] = {&layout.q, &layout.k, &layout.v};
    for (int part = 0; part < 3; ++part) {
        const kernels::SdpaOperand& op = *operands[part];
        EXPECT_EQ(op.dims, (std::array<int64_t, 4>{batch, heads, seq, head_dim}));
        const std::vector<float> expected = split[part].to_vector<float>();
        size_t i = 0;
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t h = 0; h < heads; ++h)
                for (int64_t t = 0; t < seq; ++t)
                    for (int64_t d = 0; d < head_dim; ++d, ++i) {
                        const int64_t at = op.offset + b * op.strides[0] + h * op.strides[1] + t * op.strides[2] +
                                           d * op.strides[3];
                        ASSERT_EQ(flat[at], expected[i]) << "part " << part << " (b, h, t, d) = (" << b << ", " << h
                                                         << ", " << t << ", " << d << ")";
                    }
    }
    Tensor y = Tensor::arange(batch * heads * seq * head_dim, DType::Float32).reshape({batch, heads, seq, head_dim});
    const std::vector<float> merged = ops::merge_heads(y).to_vector<float>();
    const std::vector<float> heads_first = y.to_vector<float>();
    size_t i = 0;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t h = 0; h < heads; ++h)
            for (int64_t t = 0; t < seq; ++t)
                for (int64_t d = 0; d < head_dim; ++d, ++i) {
                    const auto& s = layout.o.strides;
                    ASSERT_EQ(merged[b * s[0] + h * s[1] + t * s[2] + d * s[3]], heads_first[i]);
                }
    EXPECT_EQ(layout.stats.dims, (std::array<int64_t, 4>{batch, heads, seq, 1}));
    EXPECT_EQ(layout.stats.strides, (std::array<int64_t, 4>{heads * seq, seq, 1, 1}));
}

TEST(AttentionFusedSupport, ShapeReasonsNameTheValues) {
    EXPECT_EQ(kernels::sdpa_unsupported_reason(key_of(3, 12, 1024, 64)), "");
    EXPECT_EQ(kernels::sdpa_unsupported_reason(key_of(1, 1, 1, 8)), "");
    EXPECT_EQ(kernels::sdpa_unsupported_reason(key_of(1, 1, 1, 128)), "");
    EXPECT_EQ(kernels::sdpa_unsupported_reason(key_of(2, 3, 5, 7)),
              "head_dim 7 is not a multiple of 8 (16-byte rows for cuDNN)");
    EXPECT_EQ(kernels::sdpa_unsupported_reason(key_of(2, 3, 5, 136)), "head_dim 136 is above 128");
    EXPECT_NE(kernels::sdpa_unsupported_reason(key_of(0, 3, 5, 64)).find("empty problem (B=0 H=3 T=5 D=64"),
              std::string::npos);
}

TEST(AttentionFusedSupport, CpuTensorsAndBadShapesAreRefusedWithReasons) {
    auto reason = [](const Tensor& qkv, int64_t heads) {
        ops::FusedAttentionSupport support = ops::fused_attention_support(qkv, heads);
        EXPECT_FALSE(support.supported);
        return support.reason;
    };
    EXPECT_EQ(reason(Tensor::zeros({2, 5, 3 * 128}), 2),
              "qkv is on the cpu (the fused attention is cuDNN's, on a GPU)");
    EXPECT_EQ(reason(Tensor(), 2), "qkv is an undefined tensor");
    EXPECT_EQ(reason(Tensor::zeros({10, 384}), 2), "qkv must be (B, T, 3*C), got shape (10, 384)");
    EXPECT_EQ(reason(Tensor::zeros({2, 5, 384}), 0), "heads must be at least 1, got 0");
    EXPECT_EQ(reason(Tensor::zeros({2, 5, 385}), 2), "qkv (2, 5, 385) has last dimension 385, not divisible by 3");
    EXPECT_EQ(reason(Tensor::zeros({2, 5, 390}), 4), "C = 130 (qkv (2, 5, 390)) is not divisible by heads = 4");
    EXPECT_EQ(ops::fused_attention_compiled(), MP_CUDNN_FRONTEND != 0);
}

TEST(AttentionFusedSwitch, ParsesNamesAndRefusesOthers) {
    for (ops::AttentionPath path : {ops::AttentionPath::Auto, ops::AttentionPath::Fused, ops::AttentionPath::Composed})
        EXPECT_EQ(ops::parse_attention_path(ops::attention_path_name(path)), path);
    expect_invalid_argument([] { ops::parse_attention_path("Composed", "MINIPIPE_ATTENTION"); },
                            {"MINIPIPE_ATTENTION 'Composed' is not one of auto, fused, composed"});
    expect_invalid_argument([] { ops::parse_attention_path(""); }, {"attention path '' is not one of"});
}

TEST(AttentionFusedSwitch, ScopeSetsAndRestores) {
    const ops::AttentionPath before = ops::attention_path();
    {
        ops::AttentionPathScope composed(ops::AttentionPath::Composed);
        EXPECT_EQ(ops::attention_path(), ops::AttentionPath::Composed);
        {
            ops::AttentionPathScope fused(ops::AttentionPath::Fused);
            EXPECT_EQ(ops::attention_path(), ops::AttentionPath::Fused);
        }
        EXPECT_EQ(ops::attention_path(), ops::AttentionPath::Composed);
    }
    EXPECT_EQ(ops::attention_path(), before);
}

// On the CPU every path but `fused` runs the composed attention, bit for bit the reference, and
// `fused` refuses with the reason.
TEST(AttentionFusedSwitch, CpuRunsTheComposedPathAndForcedFusedSaysWhyNot) {
    const int64_t heads = 2;
    Tensor qkv = random_tensor({2, 7, 3 * heads * 8}, 1);
    const Tensor reference = fn::causal_attention_composed(qkv, heads);
    const std::vector<std::string> composed_entries =
        recorded([&] { fn::causal_attention_composed(qkv, heads); });
    EXPECT_EQ(composed_entries.front(), "split_qkv_heads");
    for (ops::AttentionPath path : {ops::AttentionPath::Auto, ops::AttentionPath::Composed}) {
        ops::AttentionPathScope scope(path);
        expect_equal(fn::causal_attention(qkv, heads), reference, ops::attention_path_name(path));
        EXPECT_EQ(recorded([&] { fn::causal_attention(qkv, heads); }), composed_entries);
    }
    ops::AttentionPathScope fused(ops::AttentionPath::Fused);
    expect_invalid_argument([&] { fn::causal_attention(qkv, heads); },
                            {"causal_attention", "'fused'", "float32(2, 7, 48) on cpu", "heads = 2",
                             "qkv is on the cpu"});
}

TEST(AttentionFusedErrors, OpsRefuseWhatTheyCannotTake) {
    Tensor qkv = Tensor::zeros({2, 5, 3 * 64});
    expect_invalid_argument([&] { ops::causal_attention_fused(qkv, 1); },
                            {"causal_attention_fused: cannot take qkv float32(2, 5, 192) on cpu", "heads = 1",
                             "qkv is on the cpu"});
    expect_invalid_argument([&] { ops::causal_attention_fused(Tensor(), 1); },
                            {"causal_attention_fused", "(undefined)", "undefined tensor"});
    Tensor out = Tensor::zeros({2, 5, 64});
    expect_invalid_argument([&] { ops::causal_attention_fused_backward(qkv, out, Tensor(), out, 1); },
                            {"causal_attention_fused_backward", "stats is an undefined tensor"});
    expect_invalid_argument([&] { ops::causal_attention_fused_backward(qkv, out, Tensor::zeros({2, 1, 5}), out, 1); },
                            {"causal_attention_fused_backward: cannot take qkv", "qkv is on the cpu"});
}

// ---------------------------------------------------------------- GPU: fused against composed

namespace {

// The composed attention in float64 on the CPU, forward and backward through the tape (the
// reference), and what the bounds need from it: P, dP, Δ, dS per head, in plain loops.
struct Reference {
    std::vector<double> out, stats, dqkv;        // out (B, T, C), stats (B, H, T), dqkv (B, T, 3C)
    std::vector<double> out_bound, stats_bound, dqkv_bound;
};

// Bounds (u = 2^-8, bfloat16's unit roundoff; e = 2^-24, float32's), for inputs that are bfloat16
// values (exact in both computations), with P the softmax, s the scaled scores, D head_dim:
//  forward   O_td = Σ_s P_ts v_sd. cuDNN rounds P to bfloat16 for the P·V product (relative u each),
//            accumulates in float32 over ≤ T terms (≤ T·e relative to Σ P|v|) and rounds O once:
//            |ΔO_td| ≤ (u + T·e)·Σ_s P_ts|v_sd| + u·|O_td|. The scores' own float32 error (D·e relative
//            to Σ|q k|) moves P by far less and is covered by the margin T·e.
//  stats     lse_t = log Σ_s exp(s_ts): float32 exp, sum and log: |Δ| ≤ (T + 4)·e + 4e·(|lse_t| + max_s|s_ts|).
//  backward  with Δ_t = Σ_d dO_td O_td and dS = P∘(dP − Δ): cuDNN reads the stored (rounded) O, so Δ_t
//            is off by E_t = Σ_d |dO_td|·(ΔO bound)_td + D·e·Σ_d|dO_td O_td|; P is recomputed from stats
//            (relative error ε_t = stats bound + 4e); dP may be kept in bfloat16 (u|dP|) and dS is rounded
//            to bfloat16 for the products (u|dS|):
//              δdS_ts ≤ P_ts·(E_t + u|dP_ts|) + (u + ε_t)·|dS_ts|,
//            then each product Σ over ≤ T terms adds T·e relative and its output one rounding u:
//              |ΔdQ_td| ≤ scale·Σ_s (δdS_ts + T·e|dS_ts|)|k_sd| + u|dQ_td|
//              |ΔdK_sd| ≤ scale·Σ_t (δdS_ts + T·e|dS_ts|)|q_td| + u|dK_sd|
//              |ΔdV_sd| ≤ Σ_t P_ts(u + ε_t + T·e)|dO_td| + u|dV_sd|
Reference reference(const Tensor& qkv_bf16, const Tensor& dout_bf16, int64_t heads) {
    const int64_t B = qkv_bf16.size(0), T = qkv_bf16.size(1), C = qkv_bf16.size(2) / 3, H = heads, D = C / heads;
    const double u = std::ldexp(1.0, -8), e = std::ldexp(1.0, -24), scale = 1.0 / std::sqrt(double(D));
    Tensor qkv = qkv_bf16.to(DType::Float64), dout = dout_bf16.to(DType::Float64);
    Reference r;
    {
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        Tensor out = fn::causal_attention_composed(qkv, heads);
        tape.backward({out}, {dout});
        r.out = out.to_vector<double>();
        r.dqkv = tape.grad(qkv).to_vector<double>();
    }
    const std::vector<double> x = qkv.to_vector<double>(), dy = dout.to_vector<double>();
    r.stats.assign(B * H * T, 0.0);
    r.out_bound.assign(B * T * C, 0.0);
    r.stats_bound.assign(B * H * T, 0.0);
    r.dqkv_bound.assign(B * T * 3 * C, 0.0);
    auto q = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return x[(b * T + t) * 3 * C + h * D + d]; };
    auto k = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return x[(b * T + t) * 3 * C + C + h * D + d]; };
    auto v = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return x[(b * T + t) * 3 * C + 2 * C + h * D + d]; };
    auto at_out = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return (b * T + t) * C + h * D + d; };
    auto at_qkv = [&](int64_t part, int64_t b, int64_t t, int64_t h, int64_t d) {
        return (b * T + t) * 3 * C + part * C + h * D + d;
    };
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
            std::vector<double> P(T * T, 0.0), dP(T * T, 0.0), dS(T * T, 0.0), dS_err(T * T, 0.0);
            std::vector<double> eps(T), E(T);
            for (int64_t t = 0; t < T; ++t) {
                std::vector<double> s(t + 1);
                double top = -INFINITY, max_abs = 0;
                for (int64_t j = 0; j <= t; ++j) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d) dot += q(b, t, h, d) * k(b, j, h, d);
                    s[j] = scale * dot;
                    top = std::max(top, s[j]);
                    max_abs = std::max(max_abs, std::abs(s[j]));
                }
                double sum = 0;
                for (int64_t j = 0; j <= t; ++j) sum += std::exp(s[j] - top);
                for (int64_t j = 0; j <= t; ++j) P[t * T + j] = std::exp(s[j] - top) / sum;
                const double lse = top + std::log(sum);
                r.stats[(b * H + h) * T + t] = lse;
                r.stats_bound[(b * H + h) * T + t] = (T + 4) * e + 4 * e * (std::abs(lse) + max_abs);
                eps[t] = r.stats_bound[(b * H + h) * T + t] + 4 * e;
                for (int64_t d = 0; d < D; ++d) {
                    double abs_pv = 0;
                    for (int64_t j = 0; j <= t; ++j) abs_pv += P[t * T + j] * std::abs(v(b, j, h, d));
                    const int64_t at = at_out(b, t, h, d);
                    r.out_bound[at] = (u + T * e) * abs_pv + u * std::abs(r.out[at]);
                }
                double delta = 0, delta_err = 0, abs_delta = 0;
                for (int64_t d = 0; d < D; ++d) {
                    const int64_t at = at_out(b, t, h, d);
                    delta += dy[at] * r.out[at];
                    delta_err += std::abs(dy[at]) * r.out_bound[at];
                    abs_delta += std::abs(dy[at] * r.out[at]);
                }
                E[t] = delta_err + D * e * abs_delta;
                for (int64_t j = 0; j <= t; ++j) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d) dot += dy[at_out(b, t, h, d)] * v(b, j, h, d);
                    dP[t * T + j] = dot;
                    dS[t * T + j] = P[t * T + j] * (dot - delta);
                    const double abs_ds = std::abs(dS[t * T + j]);
                    dS_err[t * T + j] = P[t * T + j] * (E[t] + u * std::abs(dot)) + (u + eps[t] + T * e) * abs_ds;
                }
            }
            for (int64_t t = 0; t < T; ++t)  // dQ
                for (int64_t d = 0; d < D; ++d) {
                    double bound = 0;
                    for (int64_t j = 0; j <= t; ++j) bound += dS_err[t * T + j] * std::abs(k(b, j, h, d));
                    const int64_t at = at_qkv(0, b, t, h, d);
                    r.dqkv_bound[at] = scale * bound + u * std::abs(r.dqkv[at]);
                }
            for (int64_t j = 0; j < T; ++j)  // dK and dV
                for (int64_t d = 0; d < D; ++d) {
                    double bound_k = 0, bound_v = 0;
                    for (int64_t t = j; t < T; ++t) {
                        bound_k += dS_err[t * T + j] * std::abs(q(b, t, h, d));
                        bound_v += P[t * T + j] * (u + eps[t] + T * e) * std::abs(dy[at_out(b, t, h, d)]);
                    }
                    const int64_t at_k = at_qkv(1, b, j, h, d), at_v = at_qkv(2, b, j, h, d);
                    r.dqkv_bound[at_k] = scale * bound_k + u * std::abs(r.dqkv[at_k]);
                    r.dqkv_bound[at_v] = bound_v + u * std::abs(r.dqkv[at_v]);
                }
        }
    return r;
}

// Every |actual − expected| within its own bound (NaN fails): reports the count and the worst.
void expect_within(const std::vector<double>& actual, const std::vector<double>& expected,
                   const std::vector<double>& bound, const std::string& what) {
    ASSERT_EQ(actual.size(), expected.size()) << what;
    size_t bad = 0, worst = 0;
    double worst_ratio = 0;
    for (size_t i = 0; i < actual.size(); ++i) {
        const double diff = std::abs(actual[i] - expected[i]);
        const double ratio = bound[i] > 0 ? diff / bound[i] : (diff == 0 ? 0 : INFINITY);
        if (!(diff <= bound[i])) ++bad;
        if (!(ratio <= worst_ratio)) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << actual.size() << " elements outside their bound; worst at "
                       << worst << ": " << actual[worst] << " vs " << expected[worst] << " (bound " << bound[worst]
                       << ", " << worst_ratio << "x)";
}

// A CPU twin of the fused algorithm: float32 arithmetic with bfloat16 roundings where cuDNN's
// flash attention makes them (P before P·V, the stored O, dP and dS before their products, P
// before Pᵀ·dO, each output). It shows on any machine that the bounds above hold for that model.
struct Twin {
    std::vector<double> out, stats, dqkv;
};
Twin fused_twin(const Tensor& qkv_bf16, const Tensor& dout_bf16, int64_t heads) {
    const int64_t B = qkv_bf16.size(0), T = qkv_bf16.size(1), C = qkv_bf16.size(2) / 3, H = heads, D = C / heads;
    const float scale = static_cast<float>(1.0 / std::sqrt(double(D)));
    const std::vector<double> x = to_doubles(qkv_bf16), dy = to_doubles(dout_bf16);
    auto bf = [](float value) { return round_to_bfloat16(value); };
    auto at_x = [&](int64_t part, int64_t b, int64_t t, int64_t h, int64_t d) {
        return (b * T + t) * 3 * C + part * C + h * D + d;
    };
    auto at_y = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return (b * T + t) * C + h * D + d; };
    Twin tw;
    tw.out.assign(B * T * C, 0.0);
    tw.stats.assign(B * H * T, 0.0);
    tw.dqkv.assign(B * T * 3 * C, 0.0);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
            std::vector<float> P(T * T, 0.0f), dS(T * T, 0.0f);
            for (int64_t t = 0; t < T; ++t) {
                std::vector<float> sc(t + 1);
                float top = -INFINITY;
                for (int64_t j = 0; j <= t; ++j) {
                    float dot = 0;
                    for (int64_t d = 0; d < D; ++d)
                        dot += float(x[at_x(0, b, t, h, d)]) * float(x[at_x(1, b, j, h, d)]);
                    sc[j] = scale * dot;
                    top = std::max(top, sc[j]);
                }
                float sum = 0;
                for (int64_t j = 0; j <= t; ++j) sum += std::exp(sc[j] - top);
                const float lse = top + std::log(sum);
                tw.stats[(b * H + h) * T + t] = lse;
                for (int64_t d = 0; d < D; ++d) {
                    float acc = 0;
                    for (int64_t j = 0; j <= t; ++j) acc += bf(std::exp(sc[j] - top)) * float(x[at_x(2, b, j, h, d)]);
                    tw.out[at_y(b, t, h, d)] = bf(acc / sum);
                }
                float delta = 0;
                for (int64_t d = 0; d < D; ++d) delta += float(dy[at_y(b, t, h, d)]) * float(tw.out[at_y(b, t, h, d)]);
                for (int64_t j = 0; j <= t; ++j) {
                    P[t * T + j] = std::exp(sc[j] - lse);
                    float dp = 0;
                    for (int64_t d = 0; d < D; ++d) dp += float(dy[at_y(b, t, h, d)]) * float(x[at_x(2, b, j, h, d)]);
                    dS[t * T + j] = bf(P[t * T + j] * (bf(dp) - delta));
                }
            }
            for (int64_t t = 0; t < T; ++t)
                for (int64_t d = 0; d < D; ++d) {
                    float acc = 0;
                    for (int64_t j = 0; j <= t; ++j) acc += dS[t * T + j] * float(x[at_x(1, b, j, h, d)]);
                    tw.dqkv[at_x(0, b, t, h, d)] = bf(scale * acc);
                }
            for (int64_t j = 0; j < T; ++j)
                for (int64_t d = 0; d < D; ++d) {
                    float acc_k = 0, acc_v = 0;
                    for (int64_t t = j; t < T; ++t) {
                        acc_k += dS[t * T + j] * float(x[at_x(0, b, t, h, d)]);
                        acc_v += bf(P[t * T + j]) * float(dy[at_y(b, t, h, d)]);
                    }
                    tw.dqkv[at_x(1, b, j, h, d)] = bf(scale * acc_k);
                    tw.dqkv[at_x(2, b, j, h, d)] = bf(acc_v);
                }
        }
    return tw;
}

struct Shape4 {
    int64_t batch, heads, seq, head_dim;
};
// Non-round shapes, a many-head one, a long one, the largest head_dim, and GPT-2's (T 1024, H 12, D 64).
const std::vector<Shape4> kShapes = {{3, 4, 37, 64}, {3, 12, 129, 64}, {2, 3, 300, 128}, {1, 2, 513, 32},
                                     {1, 12, 1024, 64}};

}  // namespace

// On the CPU: the twin of the fused algorithm lies within the bounds of the composed float64
// attention (so the bounds the GPU test applies are not tighter than the algorithm's roundings),
// and the bounds are not vacuous (the twin does differ from float64, by less than its bound).
TEST(AttentionFusedTwin, WithinTheBoundsOfTheComposedFloat64) {
    uint64_t seed = 50;
    for (const Shape4& s : std::vector<Shape4>{{2, 3, 37, 16}, {1, 2, 70, 64}}) {
        const int64_t C = s.heads * s.head_dim;
        const std::string what = key_of(s.batch, s.heads, s.seq, s.head_dim).str();
        Tensor qkv = random_tensor({s.batch, s.seq, 3 * C}, seed++).to(DType::BFloat16);
        Tensor dout = random_tensor({s.batch, s.seq, C}, seed++).to(DType::BFloat16);
        const Reference r = reference(qkv, dout, s.heads);
        const Twin twin = fused_twin(qkv, dout, s.heads);
        expect_within(twin.out, r.out, r.out_bound, what + " twin out");
        expect_within(twin.stats, r.stats, r.stats_bound, what + " twin stats");
        expect_within(twin.dqkv, r.dqkv, r.dqkv_bound, what + " twin dqkv");
        double largest = 0;
        for (size_t i = 0; i < r.dqkv.size(); ++i) largest = std::max(largest, std::abs(twin.dqkv[i] - r.dqkv[i]));
        EXPECT_GT(largest, 0.0) << what << ": the twin equals float64 exactly; the comparison would prove nothing";
    }
}

TEST(AttentionFusedCuda, ForwardAndBackwardWithinTheirBoundsOfTheComposedFloat64) {
    MP_REQUIRE_GPU();
#if !MP_CUDNN_FRONTEND
    GTEST_SKIP() << "built without cudnn-frontend (make deps, then rebuild): no fused attention to test";
#else
    const Device gpu = Device::cuda(0);
    uint64_t seed = 100;
    for (const Shape4& s : kShapes) {
        const int64_t C = s.heads * s.head_dim;
        const SdpaKey key = key_of(s.batch, s.heads, s.seq, s.head_dim);
        const std::string what = key.str();
        Tensor qkv = random_tensor({s.batch, s.seq, 3 * C}, seed++).to(DType::BFloat16);
        Tensor dout = random_tensor({s.batch, s.seq, C}, seed++).to(DType::BFloat16);
        Tensor qkv_gpu = qkv.to(gpu), dout_gpu = dout.to(gpu);
        ops::FusedAttentionSupport support = ops::fused_attention_support(qkv_gpu, s.heads);
        ASSERT_TRUE(support.supported) << what << ": " << support.reason;

        // The raw launchers into NaN-poisoned outputs: every element must be written.
        Tensor out = poisoned({s.batch, s.seq, C}, DType::BFloat16, gpu);
        Tensor stats = poisoned({s.batch, s.heads, s.seq}, DType::Float32, gpu);
        Tensor dqkv = poisoned({s.batch, s.seq, 3 * C}, DType::BFloat16, gpu);
        const size_t forward_bytes = kernels::cudnn::sdpa_causal_forward_workspace_bytes(key);
        const size_t backward_bytes = kernels::cudnn::sdpa_causal_backward_workspace_bytes(key);
        Tensor workspace = Tensor::empty({int64_t((std::max(forward_bytes, backward_bytes) + 3) / 4) + 1},
                                         DType::Int32, gpu);
        kernels::cudnn::sdpa_causal_forward(qkv_gpu.data<bfloat16>(), out.data<bfloat16>(), stats.data<float>(), key,
                                            workspace.raw_data(), compute_stream(0));
        kernels::cudnn::sdpa_causal_backward(qkv_gpu.data<bfloat16>(), out.data<bfloat16>(),
                                             dout_gpu.data<bfloat16>(), stats.data<float>(),
                                             dqkv.data<bfloat16>(), key, workspace.raw_data(), compute_stream(0));
        const Reference r = reference(qkv, dout, s.heads);
        expect_within(to_doubles(out), r.out, r.out_bound, what + " out");
        expect_within(to_doubles(stats), r.stats, r.stats_bound, what + " stats (logsumexp)");
        expect_within(to_doubles(dqkv), r.dqkv, r.dqkv_bound, what + " dqkv");
    }
#endif
}

// Through the autograd function: one tape entry, and its gradient is the launchers' bit for bit
// (deterministic backward), twice in a row.
TEST(AttentionFusedCuda, AutogradEntryIsFusedAndDeterministic) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    const int64_t batch = 3, seq = 129, heads = 12, head_dim = 64, C = heads * head_dim;
    Tensor qkv = random_tensor({batch, seq, 3 * C}, 7).to(DType::BFloat16).to(gpu);
    Tensor dout = random_tensor({batch, seq, C}, 8).to(DType::BFloat16).to(gpu);
    ops::AttentionPathScope fused(ops::AttentionPath::Fused);
    std::vector<Tensor> outs, grads;
    for (int run = 0; run < 2; ++run) {
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        Tensor out = fn::causal_attention(qkv, heads);
        EXPECT_EQ(tape.entry_names(), std::vector<std::string>{"causal_attention_fused"});
        tape.backward({out}, {dout});
        outs.push_back(out);
        grads.push_back(tape.grad(qkv));
    }
    expect_equal(outs[1], outs[0], "out, second run");
    expect_equal(grads[1], grads[0], "dqkv, second run (deterministic backward)");
    ops::FusedAttentionOutput direct = ops::causal_attention_fused(qkv, heads);
    expect_equal(direct.out, outs[0], "op out");
    expect_equal(ops::causal_attention_fused_backward(qkv, direct.out, direct.stats, dout, heads), grads[0], "op dqkv");
}

// Auto takes the fused path for bfloat16 on the GPU and the composed one for float32 and for a
// head_dim cuDNN does not take; forced fused refuses those with the reason.
TEST(AttentionFusedCuda, AutoChoosesByDtypeAndShape) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor bf16 = random_tensor({2, 33, 3 * 2 * 64}, 9).to(DType::BFloat16).to(gpu);
    Tensor fp32 = random_tensor({2, 33, 3 * 2 * 64}, 9).to(gpu);
    Tensor odd_dim = random_tensor({2, 33, 3 * 2 * 12}, 9).to(DType::BFloat16).to(gpu);
    ops::AttentionPathScope automatic(ops::AttentionPath::Auto);
    const std::vector<std::string> fused_entry{"causal_attention_fused"};
    if (ops::fused_attention_compiled())
        EXPECT_EQ(recorded([&] { fn::causal_attention(bf16, 2); }), fused_entry);
    else
        EXPECT_EQ(recorded([&] { fn::causal_attention(bf16, 2); }).front(), "split_qkv_heads");
    EXPECT_EQ(recorded([&] { fn::causal_attention(fp32, 2); }).front(), "split_qkv_heads");
    EXPECT_EQ(recorded([&] { fn::causal_attention(odd_dim, 2); }).front(), "split_qkv_heads");
    ops::AttentionPathScope fused(ops::AttentionPath::Fused);
    expect_invalid_argument([&] { fn::causal_attention(fp32, 2); },
                            {"'fused'", "qkv is float32; cuDNN's fused attention takes bfloat16"});
    expect_invalid_argument([&] { fn::causal_attention(odd_dim, 2); },
                            {"'fused'", "head_dim 12 is not a multiple of 8"});
}

// A qkv view that does not start on a 16-byte boundary is refused (Auto: composed), not misread.
TEST(AttentionFusedCuda, MisalignedQkvIsRefused) {
    MP_REQUIRE_GPU();
    const int64_t batch = 2, seq = 9, C = 2 * 64;
    Tensor buffer = random_tensor({1 + batch * seq * 3 * C}, 11).to(DType::BFloat16).to(Device::cuda(0));
    Tensor qkv = buffer.slice(1, buffer.numel()).reshape({batch, seq, 3 * C});
    ops::FusedAttentionSupport support = ops::fused_attention_support(qkv, 2);
    EXPECT_FALSE(support.supported);
    EXPECT_NE(support.reason.find("16-byte boundary"), std::string::npos) << support.reason;
}

// The graphs are built once per problem: a second call with the same key builds nothing.
TEST(AttentionFusedCuda, GraphsAreBuiltOncePerKey) {
    MP_REQUIRE_GPU();
#if !MP_CUDNN_FRONTEND
    GTEST_SKIP() << "built without cudnn-frontend (make deps, then rebuild): no graph cache to test";
#else
    Tensor qkv = random_tensor({1, 40, 3 * 3 * 64}, 12).to(DType::BFloat16).to(Device::cuda(0));
    ops::causal_attention_fused(qkv, 3);
    const int64_t built = kernels::cudnn::sdpa_graph_pairs_built();
    for (int i = 0; i < 3; ++i) ops::causal_attention_fused(qkv, 3);
    EXPECT_EQ(kernels::cudnn::sdpa_graph_pairs_built(), built);
    Tensor longer = random_tensor({1, 41, 3 * 3 * 64}, 13).to(DType::BFloat16).to(Device::cuda(0));
    ops::causal_attention_fused(longer, 3);
    EXPECT_EQ(kernels::cudnn::sdpa_graph_pairs_built(), built + 1);
#endif
}
