// Scalar kernels, the oracles the ISA kernels are tested against. GEMM over every weight format:
// weights dequantised element by element (WeightView::at), products accumulated in double, so it
// is a strictly better reference than the fp32 kernels; the indexer's head sums likewise.
// Attention: the ops header's operator.
#include <algorithm>
#include <vector>

#include "../cpu_kernels.hpp"
#include "dsv4/core/dtype.hpp"
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

void gemm_group_reference(const GemmArgs* gemms, int64_t count) {
  for (int64_t i = 0; i < count; ++i) gemm_reference(gemms[i]);
}

// The operator's sums in its order (heads, then inputs, one after the other), in double.
void indexer_scores_reference(const IndexerScoresArgs& a) {
  const int64_t nh = a.n_heads, c = a.keys.in;
  thread_local std::vector<double> key;  // one key row, decoded once for every query and head
  key.resize(size_t(c));
  for (int64_t j = 0; j < a.keys.out; ++j) {
    for (int64_t p = 0; p < c; ++p) key[size_t(p)] = double(a.keys.at(j, p));
    for (int64_t t = 0; t < a.n_queries; ++t) {
      double total = 0.0;
      for (int64_t h = 0; h < nh; ++h) {
        const float* q = a.q + (t * nh + h) * c;
        double dot = 0.0;
        for (int64_t p = 0; p < c; ++p) dot += double(q[p]) * key[size_t(p)];
        total += double(a.u[t * nh + h]) * std::max(dot, 0.0);
      }
      a.totals[t * a.ld + j] = float(total);
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

namespace {

// Sequential double accumulation: the order ops::official::dot_exact uses.
double dot_f64_reference(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

double dot_bf16_f64_reference(const float* a, const uint8_t* w, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i)
    s += double(a[i]) * double(bf16_to_float(uint16_t(w[2 * i] | w[2 * i + 1] << 8)));
  return s;
}

// The official GEMMs' pieces with the table decoders and sequential double sums.
void fp8_values_reference(const uint8_t* codes, int64_t k, float* out) {
  for (int64_t i = 0; i < k; ++i) out[i] = fp8_e4m3_to_float(codes[i]);
}
void fp4_values_reference(const uint8_t* packed, int64_t k, float* out) {
  for (int64_t i = 0; i < k; ++i) out[i] = fp4_e2m1_packed_at(packed, size_t(i));
}
void block_sums_reference(const float* aq, const float* w, int64_t k, int64_t block, double* sums) {
  for (int64_t k0 = 0, b = 0; k0 < k; k0 += block, ++b) {
    double s = 0.0;
    for (int64_t i = k0; i < std::min(k, k0 + block); ++i) s += double(aq[i]) * double(w[i]);
    sums[b] = s;
  }
}

void fp8_block_sums_reference(const float* aq, const uint8_t* codes, int64_t k, double* sums) {
  std::vector<float> w(static_cast<size_t>(k));
  fp8_values_reference(codes, k, w.data());
  block_sums_reference(aq, w.data(), k, 128, sums);
}
void fp4_block_sums_reference(const float* aq_even, const float* aq_odd, const uint8_t* packed,
                              int64_t k, double* sums) {
  std::vector<float> aq(static_cast<size_t>(k)), w(static_cast<size_t>(k));
  for (int64_t j = 0; j < k / 2; ++j)
    aq[size_t(2 * j)] = aq_even[j], aq[size_t(2 * j + 1)] = aq_odd[j];
  fp4_values_reference(packed, k, w.data());
  block_sums_reference(aq.data(), w.data(), k, 32, sums);
}

}  // namespace

OfficialKernels official_kernels_reference() {
  return {&dot_f64_reference,       &dot_bf16_f64_reference, &fp8_values_reference,
          &fp4_values_reference,    &block_sums_reference,   &fp8_block_sums_reference,
          &fp4_block_sums_reference};
}

}  // namespace dsv4::cpu
