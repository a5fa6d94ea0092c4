// Interleaved partial RoPE with the YaRN frequency correction (spec section 3).
//
// The rope slice (the last r dims of a head) rotates its pairs (2i, 2i+1) by angle pos·θ_i with
// θ_i = base^(−2i/r). With YaRN, θ_i ← θ_i/factor · ramp_i + θ_i · (1 − ramp_i): high-frequency
// pairs keep their angle, low-frequency pairs are interpolated. No magnitude factor is applied.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace dsv4::ops {

struct RopeParams {
  int64_t rope_dim = 0;  // r (even)
  double base = 10000.0;
  bool yarn = false;
  double factor = 1.0;
  int64_t original_max_position = 0;  // L
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

// θ_i for i < r/2.
inline std::vector<double> rope_frequencies(const RopeParams& p) {
  const int64_t half = p.rope_dim / 2;
  std::vector<double> theta(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    theta[size_t(i)] = std::pow(p.base, -2.0 * double(i) / double(p.rope_dim));
  if (!p.yarn || p.factor == 1.0) return theta;
  const double two_pi = 2.0 * M_PI;
  const double r = double(p.rope_dim), L = double(p.original_max_position),
               log_base = std::log(p.base);
  double low = std::floor(r * std::log(L / (p.beta_fast * two_pi)) / (2.0 * log_base));
  double high = std::ceil(r * std::log(L / (p.beta_slow * two_pi)) / (2.0 * log_base));
  low = std::clamp(low, 0.0, r - 1.0);
  high = std::clamp(high, 0.0, r - 1.0);
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((double(i) - low) / std::max(high - low, 0.001), 0.0, 1.0);
    theta[size_t(i)] = theta[size_t(i)] / p.factor * ramp + theta[size_t(i)] * (1.0 - ramp);
  }
  return theta;
}

// cos/sin of pos·θ_i, i < half (= r/2), computed in double.
inline void rope_cos_sin(const double* theta, int64_t half, int64_t pos, float* cos_out,
                         float* sin_out) {
  for (int64_t i = 0; i < half; ++i) {
    const double angle = double(pos) * theta[i];
    cos_out[i] = float(std::cos(angle));
    sin_out[i] = float(std::sin(angle));
  }
}
inline void rope_cos_sin(const std::vector<double>& theta, int64_t pos, float* cos_out,
                         float* sin_out) {
  rope_cos_sin(theta.data(), int64_t(theta.size()), pos, cos_out, sin_out);
}

// Rotates the interleaved pairs of x[0, 2·half) by the given angles; `inverse` rotates by −angle.
template <class T>
void rope_rotate(T* x, int64_t half, const float* cos_a, const float* sin_a, bool inverse = false) {
  for (int64_t i = 0; i < half; ++i) {
    const float c = cos_a[i], s = inverse ? -sin_a[i] : sin_a[i];
    const float x0 = float(x[2 * i]), x1 = float(x[2 * i + 1]);
    x[2 * i] = T(x0 * c - x1 * s);
    x[2 * i + 1] = T(x0 * s + x1 * c);
  }
}

}  // namespace dsv4::ops
