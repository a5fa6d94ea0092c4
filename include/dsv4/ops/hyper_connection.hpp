// Manifold-Constrained Hyper-Connections (mHC, spec section 2): n residual streams mixed around
// each sub-layer by a (nearly) doubly stochastic matrix obtained with Sinkhorn–Knopp.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace dsv4::ops {

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Sinkhorn–Knopp on a positive n×n matrix already softmaxed along rows (+ eps):
// one column normalisation, then (iters − 1) × (rows, then columns), each dividing by (sum + eps).
inline void sinkhorn_normalize(float* c, int64_t n, int64_t iters, float eps) {
  // Divides each of the n lines (rows: line stride n, element stride 1; columns: the transpose)
  // by its sum + eps.
  auto normalize_lines = [&](int64_t line_stride, int64_t element_stride) {
    for (int64_t line = 0; line < n; ++line) {
      float* v = c + line * line_stride;
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) sum += v[i * element_stride];
      const float inv = float(1.0 / (sum + eps));
      for (int64_t i = 0; i < n; ++i) v[i * element_stride] *= inv;
    }
  };
  normalize_lines(1, n);  // columns
  for (int64_t it = 1; it < iters; ++it) {
    normalize_lines(n, 1);  // rows
    normalize_lines(1, n);  // columns
  }
}

// From one token's mixing logits mix [(2+n)·n] (already divided by the input RMS):
//   pre[n]    = sigmoid(mix_j · scale0 + base_j) + eps
//   post[n]   = 2 · sigmoid(mix_{n+j} · scale1 + base_{n+j})
//   comb[n×n] = Sinkhorn(softmax_rows(mix_{2n+..} · scale2 + base_{2n+..}) + eps)
inline void mhc_coefficients(const float* mix, const float* base, const float* scale, int64_t n,
                             int64_t iters, float eps, float* pre, float* post, float* comb) {
  for (int64_t j = 0; j < n; ++j) {
    pre[j] = sigmoid(mix[j] * scale[0] + base[j]) + eps;
    post[j] = 2.0f * sigmoid(mix[n + j] * scale[1] + base[n + j]);
  }
  for (int64_t i = 0; i < n; ++i) {
    float* row = comb + i * n;
    const float* logits = mix + 2 * n + i * n;
    const float* b = base + 2 * n + i * n;
    float max_logit = -INFINITY;
    for (int64_t k = 0; k < n; ++k) {
      row[k] = logits[k] * scale[2] + b[k];
      max_logit = std::max(max_logit, row[k]);
    }
    double sum = 0.0;
    for (int64_t k = 0; k < n; ++k) sum += (row[k] = std::exp(row[k] - max_logit));
    for (int64_t k = 0; k < n; ++k) row[k] = float(row[k] / sum) + eps;
  }
  sinkhorn_normalize(comb, n, iters, eps);
}

// y[D] = Σ_j pre_j · X_j, X: [n, D].
template <class T>
void mhc_collapse(const T* x, const float* pre, int64_t n, int64_t d, T* y) {
  for (int64_t c = 0; c < d; ++c) {
    float acc = 0.0f;
    for (int64_t j = 0; j < n; ++j) acc += pre[j] * float(x[j * d + c]);
    y[c] = T(acc);
  }
}

// X'_k = post_k · z + Σ_i comb[i][k] · X_i, in place on X [n, D]; `scratch` holds n·D values.
template <class T>
void mhc_update(T* x, const T* z, const float* post, const float* comb, int64_t n, int64_t d,
                float* scratch) {
  for (int64_t i = 0; i < n * d; ++i) scratch[i] = float(x[i]);
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t c = 0; c < d; ++c) {
      float acc = post[k] * float(z[c]);
      for (int64_t i = 0; i < n; ++i) acc += comb[i * n + k] * scratch[i * d + c];
      x[k * d + c] = T(acc);
    }
  }
}

// Final head weights: pre_j = sigmoid(mix_j · scale + base_j) + eps.
inline void mhc_head_weights(const float* mix, const float* base, float scale, int64_t n, float eps,
                             float* pre) {
  for (int64_t j = 0; j < n; ++j) pre[j] = sigmoid(mix[j] * scale + base[j]) + eps;
}

}  // namespace dsv4::ops
