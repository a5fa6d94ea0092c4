// Reference operators of DeepSeek's official inference numerics
// (../shared/spec/official-numerics.md,
// ../shared/tools/official_ref): the rounding points of its FP8/FP4 GEMMs, its Sinkhorn kernel and
// its sparse-attention kernel, following the "reference recipe" (dot products whose GPU order is
// unspecified are summed exactly and rounded once; sequential fp32 where the code is sequential;
// correctly rounded transcendentals; single-rounding FMAs where nvcc contracts). They are the
// oracle of the `official` numerics mode; the exact mode never calls them.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dsv4/core/dtype.hpp"
#include "dsv4/core/kv_codec.hpp"
#include "dsv4/core/weight_view.hpp"

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

// linear() with an FP8 weight: act_quant(x, 128), then per 128-wide K block the exact sum of the
// code products (rounded once to fp32), times sa·sb, accumulated in fp32 in K-block order; the
// result rounded to bf16 once. x holds bf16 values [m, k]; y [m, n].
inline void fp8_gemm(const float* x, int64_t m, const WeightView& w, float* y) {
  const int64_t k = w.in, n = w.out;
  for (int64_t i = 0; i < m; ++i) {
    const QuantizedRow a = act_quant_row(x + i * k, k, 128);
    for (int64_t o = 0; o < n; ++o) {
      const uint8_t* row = w.row(o);
      const uint8_t* scales = w.scale_row((w.first_row + o) / 128);
      float acc = 0.0f;
      for (int64_t kb = 0; kb * 128 < k; ++kb) {
        double block = 0.0;
        for (int64_t p = kb * 128; p < std::min(k, kb * 128 + 128); ++p)
          block += double(a.q[size_t(p)]) * double(fp8_e4m3_to_float(row[p]));
        const float scale = mul32(a.scales[size_t(kb)], ue8m0_to_float(scales[kb]));
        acc = add32(acc, mul32(float(block), scale));
      }
      y[i * n + o] = round_bf16(acc);
    }
  }
}

// linear() with an FP4 weight: act_quant(x, 128), K blocks of 32: t = fl32(C_blk · sa[k/4]),
// t = fl32(t · sb[k]), acc = fl32(acc + t); the result rounded to bf16 once.
inline void fp4_gemm(const float* x, int64_t m, const WeightView& w, float* y) {
  const int64_t k = w.in, n = w.out;
  for (int64_t i = 0; i < m; ++i) {
    const QuantizedRow a = act_quant_row(x + i * k, k, 128);
    for (int64_t o = 0; o < n; ++o) {
      const uint8_t* row = w.row(o);
      const uint8_t* scales = w.scale_row(w.first_row + o);
      float acc = 0.0f;
      for (int64_t kb = 0; kb * 32 < k; ++kb) {
        double block = 0.0;
        for (int64_t p = kb * 32; p < std::min(k, kb * 32 + 32); ++p)
          block += double(a.q[size_t(p)]) * double(fp4_e2m1_packed_at(row, size_t(p)));
        float t = mul32(float(block), a.scales[size_t(kb / 4)]);
        t = mul32(t, ue8m0_to_float(scales[kb]));
        acc = add32(acc, t);
      }
      y[i * n + o] = round_bf16(acc);
    }
  }
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
