// The lightning indexer (spec section 3): scores compressed entries for one query and keeps the
// top-k. I_{t,w} = Σ_h u_h · ReLU(q_h · K_w) / sqrt(c), with u already divided by sqrt(H_I).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace dsv4::ops {

// q: [n_heads, c]; u: [n_heads]; key: [c].
template <class T>
float indexer_score(const T* q, const float* u, int64_t n_heads, int64_t c, const T* key) {
  float total = 0.0f;
  for (int64_t h = 0; h < n_heads; ++h) {
    float dot = 0.0f;
    const T* qh = q + h * c;
#pragma omp simd reduction(+ : dot)
    for (int64_t i = 0; i < c; ++i) dot += float(qh[i]) * float(key[i]);
    total += u[h] * std::max(dot, 0.0f);
  }
  return total / std::sqrt(float(c));
}

// Indices of the k highest scores among n (all of them when n ≤ k), ascending by index.
// Equal scores prefer the lower index, so the choice is deterministic.
inline void select_topk(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  out.resize(size_t(n));
  std::iota(out.begin(), out.end(), 0);
  if (n > k) {
    std::nth_element(out.begin(), out.begin() + k, out.end(), [&](int32_t a, int32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
    out.resize(size_t(k));
  }
  std::sort(out.begin(), out.end());
}

}  // namespace dsv4::ops
