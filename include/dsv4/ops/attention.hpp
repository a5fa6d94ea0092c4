// Shared-KV attention with per-head sinks over an arbitrary visible set (spec section 3).
//
// For each head h: ℓ_j = q_h · k_j / sqrt(d); p = softmax({ℓ_j} ∪ {sink_h}) with the sink's share
// dropped; o_h = Σ_j p_j k_j (the key vector is also the value). Softmax in fp32 with max
// subtraction.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace dsv4::ops {

// q: [H, d]; keys: n_vis pointers to [d] vectors; sinks: [H]; out: [H, d]; scores: scratch [n_vis].
template <class T>
void attention_with_sink(const T* q, int64_t n_heads, int64_t head_dim, const T* const* keys,
                         int64_t n_vis, const float* sinks, T* out, float* scores) {
  const float scale = 1.0f / std::sqrt(float(head_dim));
  for (int64_t h = 0; h < n_heads; ++h) {
    const T* qh = q + h * head_dim;
    float max_score = sinks[h];
    for (int64_t j = 0; j < n_vis; ++j) {
      float dot = 0.0f;
      const T* k = keys[j];
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < head_dim; ++c) dot += float(qh[c]) * float(k[c]);
      scores[j] = dot * scale;
      max_score = std::max(max_score, scores[j]);
    }
    double denom = std::exp(double(sinks[h] - max_score));
    for (int64_t j = 0; j < n_vis; ++j) denom += (scores[j] = std::exp(scores[j] - max_score));
    const float inv = float(1.0 / denom);
    T* oh = out + h * head_dim;
    for (int64_t c = 0; c < head_dim; ++c) oh[c] = T(0);
    for (int64_t j = 0; j < n_vis; ++j) {
      const float p = scores[j] * inv;
      const T* k = keys[j];
#pragma omp simd
      for (int64_t c = 0; c < head_dim; ++c) oh[c] = T(float(oh[c]) + p * float(k[c]));
    }
  }
}

}  // namespace dsv4::ops
