// KV compressors (spec section 3, "Compressors"): per-channel softmax pooling of a window's tokens.
//
// HCA (no overlap): entry = Σ_{s in window} softmax_s(g_s) ⊙ a_s over the m tokens.
// CSA (overlap): a_s = [A | B]; entry w pools the A halves of window w−1 and the B halves of window
// w (2m slots, per-channel softmax; the A slots are absent for w = 0). Both are followed by RMSNorm
// (weighted) and RoPE at the window's first position, applied by the caller. Pooling runs in fp32
// with max subtraction.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace dsv4::ops {

// kv, gate: [m, width] rows of one window (gate already includes the ape row); out: [width].
template <class T>
void hca_pool(const T* kv, const T* gate, int64_t m, int64_t width, T* out) {
  for (int64_t c = 0; c < width; ++c) {
    float max_g = -INFINITY;
    for (int64_t s = 0; s < m; ++s) max_g = std::max(max_g, float(gate[s * width + c]));
    double denom = 0.0, acc = 0.0;
    for (int64_t s = 0; s < m; ++s) {
      const double e = std::exp(double(float(gate[s * width + c]) - max_g));
      denom += e;
      acc += e * double(kv[s * width + c]);
    }
    out[c] = T(acc / denom);
  }
}

// prev_kv_a, prev_gate_a: [m, half] A halves of window w−1, or nullptr for w = 0;
// cur_kv, cur_gate: [m, 2·half] full rows of window w (B half = columns [half, 2·half)); out:
// [half].
template <class T>
void csa_pool(const T* prev_kv_a, const T* prev_gate_a, const T* cur_kv, const T* cur_gate,
              int64_t m, int64_t half, T* out) {
  const int64_t width = 2 * half;
  for (int64_t c = 0; c < half; ++c) {
    float max_g = -INFINITY;
    if (prev_gate_a)
      for (int64_t s = 0; s < m; ++s) max_g = std::max(max_g, float(prev_gate_a[s * half + c]));
    for (int64_t s = 0; s < m; ++s) max_g = std::max(max_g, float(cur_gate[s * width + half + c]));
    double denom = 0.0, acc = 0.0;
    if (prev_gate_a) {
      for (int64_t s = 0; s < m; ++s) {
        const double e = std::exp(double(float(prev_gate_a[s * half + c]) - max_g));
        denom += e;
        acc += e * double(prev_kv_a[s * half + c]);
      }
    }
    for (int64_t s = 0; s < m; ++s) {
      const double e = std::exp(double(float(cur_gate[s * width + half + c]) - max_g));
      denom += e;
      acc += e * double(cur_kv[s * width + half + c]);
    }
    out[c] = T(acc / denom);
  }
}

}  // namespace dsv4::ops
