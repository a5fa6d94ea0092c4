// Reference operators of DeepSeek's official inference numerics
// (../shared/spec/official-numerics.md,
// ../shared/tools/official_ref): the rounding points of its FP8/FP4 GEMMs, its Sinkhorn kernel and
// its sparse-attention kernel, following the "reference recipe" (dot products whose GPU order is
// unspecified are summed exactly and rounded once; sequential fp32 where the code is sequential;
// correctly rounded transcendentals; single-rounding FMAs where nvcc contracts). They are the
// oracle of the `official` numerics mode; the exact mode never calls them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dsv4/core/dtype.hpp"
#include "dsv4/core/kv_codec.hpp"
#include "dsv4/core/weight_view.hpp"
#include "dsv4/formats/model_config.hpp"

namespace dsv4::ops::official {

inline float round_bf16(float x) noexcept { return bf16_to_float(float_to_bf16(x)); }

// One fp32 operation, rounded once, whatever the compiler's contraction settings: computed in
// double and rounded to float (double is wide enough that this double rounding is always correct
// for +, −, ×, ÷), so no a·b + c can be fused behind the recipe's back.
inline float add32(float a, float b) noexcept { return float(double(a) + double(b)); }
inline float mul32(float a, float b) noexcept { return float(double(a) * double(b)); }
inline float div32(float a, float b) noexcept { return float(double(a) / double(b)); }

// Correctly rounded fp32 transcendentals (computed in double, rounded once).
inline float exp32(float x) noexcept { return float(std::exp(double(x))); }
inline float sigmoid32(float x) noexcept { return div32(1.0f, add32(1.0f, exp32(-x))); }
inline float fma32(float a, float b, float c) noexcept {
  return float(double(a) * double(b) + double(c));
}

// act_quant(x, block) of one row: e4m3 values (unscaled) and the power-of-two scale of each block.
struct QuantizedRow {
  std::vector<float> q;       // [n] e4m3 values
  std::vector<float> scales;  // [ceil(n / block)]
};
inline QuantizedRow act_quant_row(const float* x, int64_t n, int64_t block) {
  QuantizedRow r;
  r.q.resize(size_t(n));
  std::vector<uint8_t> codes(static_cast<size_t>(block));
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t len = std::min(block, n - b0);
    const uint8_t scale = quant::quantize_fp8_block(x + b0, len, codes.data());
    r.scales.push_back(ue8m0_to_float(scale));
    for (int64_t i = 0; i < len; ++i) r.q[size_t(b0 + i)] = fp8_e4m3_to_float(codes[size_t(i)]);
  }
  return r;
}

// Exact dot product rounded once to fp32 (the recipe's "exact sum": products of fp32 values are
// exact in double, and double accumulation is exact or within an ulp of double for these sizes).
inline float dot_exact(const float* a, const float* b, int64_t n) noexcept {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return float(s);
}

// The rest of one output of linear() with a block-scaled weight, given the exact sums Σ aq·code
// of each of its K blocks (128 wide for FP8, 32 for FP4): FP8 — each block sum times
// fl32(sa·sb), accumulated in fp32 in K-block order; FP4 — t = fl32(C_blk · sa[k/4]),
// t = fl32(t · sb[k]), acc = fl32(acc + t). The result rounded to bf16 once.
inline float combine_block_sums(const QuantizedRow& a, const WeightView& w, int64_t o,
                                const double* sums) {
  float acc = 0.0f;
  if (w.format == WeightFormat::kFp8Block) {
    const uint8_t* scales = w.scale_row((w.first_row + o) / 128);
    for (int64_t kb = 0; kb * 128 < w.in; ++kb) {
      const float scale = mul32(a.scales[size_t(kb)], ue8m0_to_float(scales[kb]));
      acc = add32(acc, mul32(float(sums[kb]), scale));
    }
  } else {
    const uint8_t* scales = w.scale_row(w.first_row + o);
    for (int64_t kb = 0; kb * 32 < w.in; ++kb) {
      float t = mul32(float(sums[kb]), a.scales[size_t(kb / 4)]);
      t = mul32(t, ue8m0_to_float(scales[kb]));
      acc = add32(acc, t);
    }
  }
  return round_bf16(acc);
}

// One output of linear() with an FP8 or FP4 weight, for an act-quantised row: the exact block
// sums of the code products (rounded once to fp32 each; products of e4m3/e2m1 values are exact in
// double and so is their sum over a block, in any order), then combine_block_sums.
inline float quantized_dot(const QuantizedRow& a, const WeightView& w, int64_t o) {
  const bool fp8 = w.format == WeightFormat::kFp8Block;
  const int64_t k = w.in, block = fp8 ? 128 : 32;
  const StoredRow row = w.stored_row(o);
  std::vector<double> sums(static_cast<size_t>((k + block - 1) / block));
  for (int64_t kb = 0; kb * block < k; ++kb)
    for (int64_t p = kb * block; p < std::min(k, kb * block + block); ++p) {
      const float code =
          fp8 ? fp8_e4m3_to_float(*row.at(p)) : fp4_e2m1_packed_at(row.at(p / 2), size_t(p & 1));
      sums[size_t(kb)] += double(a.q[size_t(p)]) * double(code);
    }
  return combine_block_sums(a, w, o, sums.data());
}

// linear() with an FP8 or FP4 weight: act_quant(x, 128), then quantized_dot per output. x holds
// bf16 values [m, k]; y [m, n].
inline void quantized_gemm(const float* x, int64_t m, const WeightView& w, float* y) {
  for (int64_t i = 0; i < m; ++i) {
    const QuantizedRow a = act_quant_row(x + i * w.in, w.in, 128);
    for (int64_t o = 0; o < w.out; ++o) y[i * w.out + o] = quantized_dot(a, w, o);
  }
}
inline void fp8_gemm(const float* x, int64_t m, const WeightView& w, float* y) {
  quantized_gemm(x, m, w, y);
}
inline void fp4_gemm(const float* x, int64_t m, const WeightView& w, float* y) {
  quantized_gemm(x, m, w, y);
}

inline float rsqrt32(float x) noexcept { return float(1.0 / std::sqrt(double(x))); }

// torch's CUDA mean: the exact sum rounded once, times fl32(1/n).
inline float mean32(const float* x, int64_t n) noexcept {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]);
  return mul32(float(s), float(1.0 / double(n)));
}
// mean32 of fl32(x_i²).
inline float mean_square32(const float* x, int64_t n) noexcept {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(mul32(x[i], x[i]));
  return mul32(float(s), float(1.0 / double(n)));
}

// model.py RMSNorm: y = bf16(w · fl32(x · rsqrt(mean(x²) + eps))). y may be x.
inline void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* y) noexcept {
  const float r = rsqrt32(add32(mean_square32(x, n), eps));
  for (int64_t i = 0; i < n; ++i) y[i] = round_bf16(mul32(weight[i], mul32(x[i], r)));
}

// The per-head query norm, q *= rsqrt(q.square().mean(-1) + eps) on bf16 tensors: every torch
// operation rounds to bf16. y may be x.
inline void query_norm_bf16(const float* x, int64_t n, float eps, float* y) {
  std::vector<float> sq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) sq[size_t(i)] = round_bf16(mul32(x[i], x[i]));
  const float ms = round_bf16(add32(round_bf16(mean32(sq.data(), n)), eps));
  const float r = round_bf16(rsqrt32(ms));
  for (int64_t i = 0; i < n; ++i) y[i] = round_bf16(mul32(x[i], r));
}

// model.py precompute_freqs_cis in fp32: θ_i = 1 / fl32(base^fl32(2i / r)), with YaRN's ramp
// when original_max_position > 0. Returned as doubles holding fp32 values (RopeArgs::theta).
inline std::vector<double> rope_frequencies(int64_t rope_dim, double base, bool yarn, double factor,
                                            int64_t original_max_position, double beta_fast,
                                            double beta_slow) {
  const int64_t half = rope_dim / 2;
  std::vector<float> freqs(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float expo = div32(float(2 * i), float(rope_dim));
    freqs[size_t(i)] = div32(1.0f, float(std::pow(base, double(expo))));
  }
  if (yarn && original_max_position > 0) {
    const double two_pi = 2.0 * M_PI, L = double(original_max_position);
    auto correction_dim = [&](double rotations) {
      return double(rope_dim) * std::log(L / (rotations * two_pi)) / (2.0 * std::log(base));
    };
    const double low = std::max(std::floor(correction_dim(beta_fast)), 0.0);
    const double high = std::min(std::ceil(correction_dim(beta_slow)), double(rope_dim - 1));
    const double span = low == high ? 0.001 : high - low;
    for (int64_t i = 0; i < half; ++i) {
      float ramp = div32(add32(float(i), -float(low)), float(span));
      ramp = std::clamp(ramp, 0.0f, 1.0f);
      const float smooth = add32(1.0f, -ramp);
      const float f = freqs[size_t(i)];
      freqs[size_t(i)] =
          add32(mul32(div32(f, float(factor)), add32(1.0f, -smooth)), mul32(f, smooth));
    }
  }
  return {freqs.begin(), freqs.end()};
}

// apply_rotary_emb on the interleaved pairs of x[0, 2·half) at `position`: angles fl32(t·θ_i),
// cos/sin correctly rounded, the complex product in fp32 ops, the result in bf16.
inline void rope_rotate(float* x, int64_t half, const double* theta, int64_t position,
                        bool inverse) noexcept {
  for (int64_t i = 0; i < half; ++i) {
    const float angle = mul32(float(position), float(theta[i]));
    const float c = float(std::cos(double(angle)));
    float s = float(std::sin(double(angle)));
    if (inverse) s = -s;
    const float x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = round_bf16(add32(mul32(x0, c), -mul32(x1, s)));
    x[2 * i + 1] = round_bf16(add32(mul32(x0, s), mul32(x1, c)));
  }
}

// Compressor pooling of one channel over `n` slots (gate −inf = an empty slot): per-channel
// softmax p = fl32(exp(g − max) / Σexp), pooled = exact Σ fl32(kv · p), rounded to bf16 (the
// official code casts the pooled entry to bf16 before its norm).
inline float pool_channel(const float* kv, const float* gate, int64_t n) {
  float g_max = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < n; ++s) g_max = std::max(g_max, gate[s]);
  std::vector<float> e(static_cast<size_t>(n));
  double denom = 0.0;
  for (int64_t s = 0; s < n; ++s) {
    e[size_t(s)] =
        gate[s] == -std::numeric_limits<float>::infinity() ? 0.0f : exp32(add32(gate[s], -g_max));
    denom += e[size_t(s)];
  }
  double pooled = 0.0;
  for (int64_t s = 0; s < n; ++s) pooled += double(mul32(kv[s], div32(e[size_t(s)], float(denom))));
  return round_bf16(float(pooled));
}

// y = Σ_j pre_j · x_j over the n streams, sequential fp32 (j ascending), rounded to bf16.
inline void mhc_collapse(const float* x, const float* pre, int64_t n, int64_t d, float* y) {
  for (int64_t c = 0; c < d; ++c) {
    float acc = mul32(pre[0], x[c]);
    for (int64_t j = 1; j < n; ++j) acc = add32(acc, mul32(pre[j], x[j * d + c]));
    y[c] = round_bf16(acc);
  }
}

// hc_post: X'_k = bf16(fl32(post_k · z) + Σ_j comb[j][k] · X_j) with the sum sequential in j.
// In place on X [n, D]; `scratch` holds n·D values.
inline void mhc_update(float* x, const float* z, const float* post, const float* comb, int64_t n,
                       int64_t d, float* scratch) {
  std::copy_n(x, n * d, scratch);
  for (int64_t k = 0; k < n; ++k)
    for (int64_t c = 0; c < d; ++c) {
      float t = mul32(comb[k], scratch[c]);
      for (int64_t j = 1; j < n; ++j) t = add32(t, mul32(comb[j * n + k], scratch[j * d + c]));
      x[k * d + c] = round_bf16(add32(mul32(post[k], z[c]), t));
    }
}

// The mHC mixes of one token: fl32(exact(x · fn_r)) · rsqrt(mean(x²) + eps) for each fn row.
// `dot` gives the exact sum (double accumulated: dot_exact, or a vectorised kernel).
template <class Dot>
void mhc_mixes(const float* x, int64_t width, const float* fn, int64_t rows, float eps,
               float* mixes, Dot dot) {
  const float rs = rsqrt32(add32(mean_square32(x, width), eps));
  for (int64_t r = 0; r < rows; ++r) mixes[r] = mul32(float(dot(x, fn + r * width, width)), rs);
}
inline void mhc_mixes(const float* x, int64_t width, const float* fn, int64_t rows, float eps,
                      float* mixes) {
  mhc_mixes(x, width, fn, rows, eps, mixes, dot_exact);
}

// hc_head weights: pre_j = fl32(sigmoid(fl32(fl32(mix_j · scale) + base_j)) + eps), separate ops.
inline void mhc_head_weights(const float* mixes, const float* base, float scale, int64_t n,
                             float eps, float* pre) noexcept {
  for (int64_t j = 0; j < n; ++j)
    pre[j] = add32(sigmoid32(add32(mul32(mixes[j], scale), base[j])), eps);
}

// The expert activation: u = clamp(u, ±L), g = min(g, L), silu(g) = g / (1 + exp(−g)), h = silu·u,
// each an fp32 operation. out may be gate.
inline void swiglu(const float* gate, const float* up, int64_t n, float limit, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i], u = up[i];
    if (limit > 0.0f) {
      u = std::clamp(u, -limit, limit);
      g = std::min(g, limit);
    }
    out[i] = mul32(div32(g, add32(1.0f, exp32(-g))), u);
  }
}

// The indices of the k largest of n scores in torch.topk's order: descending, lower index first
// among equal values.
inline void top_k_descending(const float* scores, int64_t n, int64_t k, int32_t* out) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = int32_t(i);
  k = std::min(k, n);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  std::copy_n(order.begin(), k, out);
}

// The router's scores from fp32 logits: softmax (exp(s − max) / Σ), sigmoid, or
// sqrt(softplus(s)) with softplus's threshold of 20.
inline void router_scores(const float* logits, int64_t n, ScoringFunc func, float* scores) {
  switch (func) {
    case ScoringFunc::kSoftmax: {
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, logits[i]);
      double denom = 0.0;
      for (int64_t i = 0; i < n; ++i) denom += (scores[i] = exp32(add32(logits[i], -m)));
      for (int64_t i = 0; i < n; ++i) scores[i] = div32(scores[i], float(denom));
      return;
    }
    case ScoringFunc::kSigmoid:
      for (int64_t i = 0; i < n; ++i) scores[i] = sigmoid32(logits[i]);
      return;
    case ScoringFunc::kSqrtSoftplus:
      for (int64_t i = 0; i < n; ++i) {
        const float s = logits[i];
        const float sp = s > 20.0f ? s : float(std::log1p(std::exp(double(std::min(s, 20.0f)))));
        scores[i] = float(std::sqrt(double(sp)));
      }
      return;
  }
}

// The routing weights of the selected experts (in selection order): the unbiased scores,
// normalised by their sequential fp32 sum unless softmax, times fl32(route_scale).
inline void routing_weights(const float* scores, const int32_t* selected, int64_t k,
                            ScoringFunc func, float route_scale, float* weights) {
  for (int64_t j = 0; j < k; ++j) weights[j] = scores[selected[j]];
  if (func != ScoringFunc::kSoftmax) {
    float sum = weights[0];
    for (int64_t j = 1; j < k; ++j) sum = add32(sum, weights[j]);
    for (int64_t j = 0; j < k; ++j) weights[j] = div32(weights[j], sum);
  }
  for (int64_t j = 0; j < k; ++j) weights[j] = mul32(weights[j], route_scale);
}

// The indexer's score of one key: Σ_h bf16(relu(bf16(q_h · k)) · w_h), each term and the exact
// head sum rounded to bf16. q [H, c] and k [c] hold the (rotated, FP4-grid) bf16 values; `dot`
// gives the exact sums as mhc_mixes's.
template <class Dot>
float index_score(const float* q, const float* weights, int64_t n_heads, int64_t c,
                  const float* key, Dot dot) {
  double sum = 0.0;
  for (int64_t h = 0; h < n_heads; ++h) {
    const float s = round_bf16(float(dot(q + h * c, key, c)));
    sum += round_bf16(mul32(std::max(s, 0.0f), weights[h]));
  }
  return round_bf16(float(sum));
}
inline float index_score(const float* q, const float* weights, int64_t n_heads, int64_t c,
                         const float* key) {
  return index_score(q, weights, n_heads, c, key, dot_exact);
}

// hc_split_sinkhorn for one token: mixes [(2 + hc)·hc], scale[3], base [(2 + hc)·hc]; pre [hc],
// post [hc], comb [hc, hc] (comb[j][k]).
inline void hc_split_sinkhorn(const float* mixes, const float* scale, const float* base, int64_t hc,
                              int64_t iters, float eps, float* pre, float* post, float* comb) {
  for (int64_t j = 0; j < hc; ++j) {
    pre[j] = add32(sigmoid32(fma32(mixes[j], scale[0], base[j])), eps);
    post[j] = mul32(2.0f, sigmoid32(fma32(mixes[hc + j], scale[1], base[hc + j])));
  }
  const float* m = mixes + 2 * hc;
  const float* b = base + 2 * hc;
  auto row_sum = [&](int64_t r) {
    double s = 0.0;
    for (int64_t c = 0; c < hc; ++c) s += comb[r * hc + c];
    return float(s);
  };
  auto col_sum = [&](int64_t c) {
    double s = 0.0;
    for (int64_t r = 0; r < hc; ++r) s += comb[r * hc + c];
    return float(s);
  };
  for (int64_t r = 0; r < hc; ++r) {
    float rmax = -std::numeric_limits<float>::infinity();
    for (int64_t c = 0; c < hc; ++c) {
      comb[r * hc + c] = fma32(m[r * hc + c], scale[2], b[r * hc + c]);
      rmax = std::max(rmax, comb[r * hc + c]);
    }
    for (int64_t c = 0; c < hc; ++c) comb[r * hc + c] = exp32(add32(comb[r * hc + c], -rmax));
    const float s = row_sum(r);
    for (int64_t c = 0; c < hc; ++c) comb[r * hc + c] = add32(div32(comb[r * hc + c], s), eps);
  }
  auto normalise_columns = [&] {
    std::vector<float> sums(static_cast<size_t>(hc));
    for (int64_t c = 0; c < hc; ++c) sums[size_t(c)] = add32(col_sum(c), eps);
    for (int64_t r = 0; r < hc; ++r)
      for (int64_t c = 0; c < hc; ++c) comb[r * hc + c] = div32(comb[r * hc + c], sums[size_t(c)]);
  };
  normalise_columns();
  for (int64_t it = 1; it < iters; ++it) {
    for (int64_t r = 0; r < hc; ++r) {
      const float s = add32(row_sum(r), eps);
      for (int64_t c = 0; c < hc; ++c) comb[r * hc + c] = div32(comb[r * hc + c], s);
    }
    normalise_columns();
  }
}

// sparse_attn for one query: q [h, d] (bf16 values), keys [n] pointers to d bf16 values (null =
// an index of −1: k = 0, score −inf), sinks [h]; blocks of 64 in list order, online softmax in
// fp32, PV with bf16(p), the sink in the denominator only; out [h, d] rounded to bf16.
inline void sparse_attn(const float* q, int64_t h, int64_t d, const float* const* keys, int64_t n,
                        const float* sinks, float scale, float* out) {
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t head = 0; head < h; ++head) {
    const float* qh = q + head * d;
    float m_run = -inf, l = 0.0f;
    std::vector<float> acc(size_t(d), 0.0f);
    for (int64_t b0 = 0; b0 < n; b0 += 64) {
      const int64_t b1 = std::min(n, b0 + 64);
      std::vector<float> s(size_t(b1 - b0), -inf);
      float m_new = m_run;
      for (int64_t j = b0; j < b1; ++j) {
        if (!keys[j]) continue;
        double dot = 0.0;
        for (int64_t c = 0; c < d; ++c) dot += double(qh[c]) * double(keys[j][c]);
        s[size_t(j - b0)] = mul32(float(dot), scale);
        m_new = std::max(m_new, s[size_t(j - b0)]);
      }
      const float rescale = m_run == -inf && m_new == -inf ? 0.0f : exp32(add32(m_run, -m_new));
      double p_sum = 0.0;
      std::vector<double> pv(size_t(d), 0.0);
      for (int64_t j = b0; j < b1; ++j) {
        if (!keys[j]) continue;
        const float p = exp32(add32(s[size_t(j - b0)], -m_new));
        p_sum += p;
        const double pb = round_bf16(p);
        for (int64_t c = 0; c < d; ++c) pv[size_t(c)] += pb * double(keys[j][c]);
      }
      l = fma32(l, rescale, float(p_sum));
      for (int64_t c = 0; c < d; ++c)
        acc[size_t(c)] = add32(mul32(acc[size_t(c)], rescale), float(pv[size_t(c)]));
      m_run = m_new;
    }
    l = add32(l, exp32(sinks[head] - m_run));
    for (int64_t c = 0; c < d; ++c) out[head * d + c] = round_bf16(div32(acc[size_t(c)], l));
  }
}

}  // namespace dsv4::ops::official
