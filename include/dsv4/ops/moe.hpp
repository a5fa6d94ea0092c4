// Mixture-of-experts routing and the clamped SwiGLU (spec section 4).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "dsv4/formats/model_config.hpp"

namespace dsv4::ops {

// Router scores from logits z [E]: sqrt(softplus(z)), sigmoid(z) or softmax(z).
inline void router_scores(const float* logits, int64_t n_experts, ScoringFunc func, float* scores) {
  switch (func) {
    case ScoringFunc::kSqrtSoftplus:
      for (int64_t e = 0; e < n_experts; ++e) {
        const double z = logits[e];
        const double softplus = z > 20.0 ? z : std::log1p(std::exp(z));  // overflow-safe
        scores[e] = float(std::sqrt(softplus));
      }
      return;
    case ScoringFunc::kSigmoid:
      for (int64_t e = 0; e < n_experts; ++e)
        scores[e] = float(1.0 / (1.0 + std::exp(-double(logits[e]))));
      return;
    case ScoringFunc::kSoftmax: {
      const float max_z = *std::max_element(logits, logits + n_experts);
      double sum = 0.0;
      for (int64_t e = 0; e < n_experts; ++e) sum += std::exp(double(logits[e] - max_z));
      for (int64_t e = 0; e < n_experts; ++e)
        scores[e] = float(std::exp(double(logits[e] - max_z)) / sum);
      return;
    }
  }
}

// Top-k experts by scores + bias (bias may be nullptr; it only selects). Ties prefer lower ids.
// `ids` is scratch of n_experts values.
inline void select_experts(const float* scores, const float* bias, int64_t n_experts, int64_t k,
                           int32_t* out, int32_t* ids) {
  std::iota(ids, ids + n_experts, 0);
  auto key = [&](int32_t e) { return scores[e] + (bias ? bias[e] : 0.0f); };
  std::partial_sort(ids, ids + k, ids + n_experts, [&](int32_t a, int32_t b) {
    return key(a) > key(b) || (key(a) == key(b) && a < b);
  });
  std::copy(ids, ids + k, out);
}
inline void select_experts(const float* scores, const float* bias, int64_t n_experts, int64_t k,
                           int32_t* out) {
  std::vector<int32_t> ids(static_cast<size_t>(n_experts));
  select_experts(scores, bias, n_experts, k, out, ids.data());
}

// Weights of the selected experts: s_e / Σ_sel s (not renormalised for softmax), times `scale`.
inline void routing_weights(const float* scores, const int32_t* selected, int64_t k,
                            ScoringFunc func, float scale, float* weights) {
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) sum += scores[selected[i]];
  const bool renormalise = func != ScoringFunc::kSoftmax;
  for (int64_t i = 0; i < k; ++i)
    weights[i] = float(
        (renormalise ? double(scores[selected[i]]) / sum : double(scores[selected[i]])) * scale);
}

// out = silu(min(gate, L)) ⊙ clamp(up, −L, L); limit L = 0 means no clamp.
template <class T>
void swiglu_clamped(const T* gate, const T* up, int64_t n, float limit, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    float g = float(gate[i]), u = float(up[i]);
    if (limit > 0.0f) {
      g = std::min(g, limit);
      u = std::clamp(u, -limit, limit);
    }
    out[i] = T(g / (1.0f + std::exp(-g)) * u);
  }
}

}  // namespace dsv4::ops
