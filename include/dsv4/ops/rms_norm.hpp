// RMSNorm: y = w ⊙ x / sqrt(mean(x²) + eps) (weighted) or without w (unweighted, w = nullptr).
// The sum of squares is accumulated in double; the result is rounded once to T.
#pragma once

#include <cmath>
#include <cstdint>

namespace dsv4::ops {

// x, y: [n] (may alias); weight: [n] or nullptr.
template <class T>
void rms_norm(const T* x, const T* weight, T* y, int64_t n, float eps) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_sq += double(x[i]) * double(x[i]);
  const double inv = 1.0 / std::sqrt(sum_sq / double(n) + double(eps));
  for (int64_t i = 0; i < n; ++i) {
    const double v = double(x[i]) * inv;
    y[i] = T(weight ? v * double(weight[i]) : v);
  }
}

// Row-wise over a [rows, n] matrix.
template <class T>
void rms_norm_rows(const T* x, const T* weight, T* y, int64_t rows, int64_t n, float eps) {
#pragma omp parallel for schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) rms_norm(x + r * n, weight, y + r * n, n, eps);
}

// 1 / sqrt(mean(x²) + eps): the mHC input scale.
template <class T>
double inverse_rms(const T* x, int64_t n, float eps) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_sq += double(x[i]) * double(x[i]);
  return 1.0 / std::sqrt(sum_sq / double(n) + double(eps));
}

}  // namespace dsv4::ops
