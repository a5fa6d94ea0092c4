// Scalar kernels, the oracles the ISA kernels are tested against. GEMM over every weight format:
// weights dequantised element by element (WeightView::at), products accumulated in double, so it
// is a strictly better reference than the fp32 kernels. Attention: the ops header's operator.
#include <vector>

#include "../cpu_kernels.hpp"
#include "dsv4/ops/attention.hpp"

namespace dsv4::cpu {

void gemm_reference(const GemmArgs& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double sum = 0.0;
      for (int64_t p = 0; p < g.k; ++p) sum += double(g.a[i * g.lda + p]) * double(g.w.at(j, p));
      float* c = g.c + i * g.ldc + j;
      *c = float(g.alpha * sum + (g.beta == 0.0f ? 0.0 : double(g.beta) * *c));
    }
  }
}

}  // namespace dsv4::cpu

namespace dsv4::cpu {

void attention_reference(const AttentionArgs& a) {
  thread_local std::vector<float> scores, decoded;
  thread_local std::vector<const float*> keys;
  scores.resize(size_t(a.n_keys));
  const float* const* key_ptrs = a.keys;
  if (a.key_entries) {  // cache entries: decode them all, then the plain operator
    decoded.resize(size_t(a.n_keys * a.head_dim));
    keys.resize(size_t(a.n_keys));
    for (int64_t j = 0; j < a.n_keys; ++j) {
      a.key_codec.decode(a.key_entries[j], decoded.data() + j * a.head_dim);
      keys[size_t(j)] = decoded.data() + j * a.head_dim;
    }
    key_ptrs = keys.data();
  }
  ops::attention_with_sink(a.q, a.n_heads, a.head_dim, key_ptrs, a.n_keys, a.sinks, a.out,
                           scores.data());
}

}  // namespace dsv4::cpu
