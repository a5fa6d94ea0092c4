// The official numerics on the CPU: each operator applies the reference recipe
// (dsv4/ops/official_numerics.hpp) row by row. Rows (tokens, output features, queries) are
// independent, so they run in parallel without changing a single rounding.
#include "official_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "dsv4/ops/official_numerics.hpp"
#include "parallel_guard.hpp"

namespace dsv4::cpu::official {
namespace ref = ops::official;
namespace {

constexpr int64_t kParallelRows = 16;

bool block_scaled(WeightFormat f) {
  return f == WeightFormat::kFp8Block || f == WeightFormat::kFp4Block;
}

// The mHC mixes of every token of a site: x [T, width], fn [rows, width] (decoded once).
std::vector<float> mhc_mixes(const WeightView& fn, const float* x, int64_t n_tokens, int64_t width,
                             float eps) {
  std::vector<float> fn_rows(size_t(fn.out * width)), mixes(size_t(n_tokens * fn.out));
  for (int64_t r = 0; r < fn.out; ++r) fn.decode_row(r, fn_rows.data() + r * width);
#pragma omp parallel for schedule(static) if (n_tokens > kParallelRows)
  for (int64_t t = 0; t < n_tokens; ++t)
    ref::mhc_mixes(x + t * width, width, fn_rows.data(), fn.out, eps, mixes.data() + t * fn.out);
  return mixes;
}

}  // namespace

void gemm(const GemmArgs& g) {
  const WeightView& w = g.w;
  const bool quantized = g.numerics == GemmNumerics::kOfficialLinear && block_scaled(w.format);
  const bool to_bf16 = g.numerics != GemmNumerics::kOfficialF32;
  // Activations act-quantised once per row (FP8/FP4 linears only).
  std::vector<ref::QuantizedRow> rows(quantized ? size_t(g.m) : 0);
  for (int64_t i = 0; i < int64_t(rows.size()); ++i)
    rows[size_t(i)] = ref::act_quant_row(g.a + i * g.lda, g.k, 128);
  ParallelGuard guard;
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < g.n; ++o)
    guard.run([&] {
      if (quantized) {
        for (int64_t i = 0; i < g.m; ++i)
          g.c[i * g.ldc + o] = w.format == WeightFormat::kFp8Block
                                   ? ref::fp8_dot(rows[size_t(i)], w, o)
                                   : ref::fp4_dot(rows[size_t(i)], w, o);
        return;
      }
      thread_local std::vector<float> weight_row;
      weight_row.resize(size_t(g.k));
      w.decode_row(o, weight_row.data());
      for (int64_t i = 0; i < g.m; ++i) {
        const float y = ref::dot_exact(g.a + i * g.lda, weight_row.data(), g.k);
        g.c[i * g.ldc + o] = to_bf16 ? ref::round_bf16(y) : y;
      }
    });
  guard.rethrow();
}

void rms_norm(const RmsNormArgs& a) {
  ParallelGuard guard;
#pragma omp parallel for schedule(static) if (a.rows > kParallelRows)
  for (int64_t r = 0; r < a.rows; ++r)
    guard.run([&] {
      const float* x = a.x + r * a.n;
      float* y = a.y + r * a.n;
      if (a.weight)
        ref::rms_norm(x, a.weight, a.n, a.eps, y);
      else
        ref::query_norm_bf16(x, a.n, a.eps, y);
    });
  guard.rethrow();
}

void rope(const RopeArgs& a) {
#pragma omp parallel for schedule(static) if (a.rows > kParallelRows)
  for (int64_t r = 0; r < a.rows; ++r) {
    float* row = a.x + r * a.row_stride;
    for (int64_t h = 0; h < a.n_heads; ++h)
      ref::rope_rotate(row + h * a.head_dim + a.head_dim - a.rope_dim, a.rope_dim / 2, a.theta,
                       a.first_position + r * a.position_step, a.inverse);
  }
}

void attention(const AttentionArgs& a) {
  const int64_t d = a.head_dim;
  // Keys stored in a cache format are decoded to the values the official kernel reads (bf16
  // values of the packed grid); a null entry stays null (index −1).
  std::vector<float> decoded(a.key_entries ? size_t(a.n_keys * d) : 0);
  std::vector<const float*> keys(size_t(a.n_keys));
  for (int64_t j = 0; j < a.n_keys; ++j) {
    if (!a.key_entries) {
      keys[size_t(j)] = a.keys[j];
    } else if (a.key_entries[j]) {
      a.key_codec.decode(a.key_entries[j], decoded.data() + j * d);
      keys[size_t(j)] = decoded.data() + j * d;
    }
  }
  const auto scale = float(std::pow(double(d), -0.5));
  ref::sparse_attn(a.q, a.n_heads, d, keys.data(), a.n_keys, a.sinks, scale, a.out);
}

void indexer_topk(const IndexerTopkArgs& a) {
  const int64_t c = a.head_dim, H = a.n_heads;
  int64_t most = 0;
  for (int64_t t = 0; t < a.n_queries; ++t) most = std::max(most, a.n_visible[t]);
  // Every visible key decoded once (the official mode is the reference, not the fast path).
  std::vector<float> keys(size_t(most * c));
  const size_t entry_bytes = a.key_block_entries ? a.key_codec.bytes() : 0;
  for (int64_t w = 0; w < most; ++w) {
    const int64_t b = w / a.block_entries, i = w % a.block_entries;
    if (a.key_block_entries)
      a.key_codec.decode(a.key_block_entries[b] + size_t(i) * entry_bytes, keys.data() + w * c);
    else
      std::copy_n(a.key_blocks[b] + i * c, c, keys.data() + w * c);
  }
  ParallelGuard guard;
#pragma omp parallel for schedule(dynamic, 1) if (a.n_queries > 1)
  for (int64_t t = 0; t < a.n_queries; ++t)
    guard.run([&] {
      const int64_t n = a.n_visible[t];
      thread_local std::vector<float> scores;
      scores.resize(size_t(n));
      for (int64_t w = 0; w < n; ++w)
        scores[size_t(w)] =
            ref::index_score(a.q + t * H * c, a.weights + t * H, H, c, keys.data() + w * c);
      a.n_selected[t] = std::min(a.top_k, n);
      ref::top_k_descending(scores.data(), n, a.top_k, a.selected + t * a.top_k);
    });
  guard.rethrow();
}

void compress_pool(const CompressPoolArgs& a) {
  const int64_t m = a.m, half = a.out_dim;
  const int64_t slots = a.overlap ? 2 * m : m;
  std::vector<float> kv(static_cast<size_t>(slots)), gate(static_cast<size_t>(slots));
  for (int64_t ch = 0; ch < half; ++ch) {
    if (!a.overlap) {
      for (int64_t s = 0; s < m; ++s) kv[size_t(s)] = a.kv[s * half + ch];
      for (int64_t s = 0; s < m; ++s) gate[size_t(s)] = a.gate[s * half + ch];
    } else {
      // Slots 0..m−1: the previous window's A halves (empty for the first window), then this
      // window's B halves, as the official overlap transform lays them out.
      for (int64_t s = 0; s < m; ++s) {
        kv[size_t(s)] = a.prev_kv_a ? a.prev_kv_a[s * half + ch] : 0.0f;
        gate[size_t(s)] = a.prev_gate_a ? a.prev_gate_a[s * half + ch] : -INFINITY;
        kv[size_t(m + s)] = a.kv[s * 2 * half + half + ch];
        gate[size_t(m + s)] = a.gate[s * 2 * half + half + ch];
      }
    }
    a.out[ch] = ref::pool_channel(kv.data(), gate.data(), slots);
  }
}

void mhc_pre(const MhcPreArgs& a) {
  const int64_t n = a.n, D = a.d, rows = a.fn.out;
  const std::vector<float> mixes = mhc_mixes(a.fn, a.x, a.n_tokens, n * D, a.norm_eps);
#pragma omp parallel for schedule(static) if (a.n_tokens > kParallelRows)
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    float pre[64];  // hc_mult ≤ 64 is checked by the config
    ref::hc_split_sinkhorn(mixes.data() + t * rows, a.scale, a.base, n, a.sinkhorn_iters, a.hc_eps,
                           pre, a.post + t * n, a.comb + t * n * n);
    ref::mhc_collapse(a.x + t * n * D, pre, n, D, a.y + t * D);
  }
}

void mhc_post(const MhcPostArgs& a) {
  ParallelGuard guard;
#pragma omp parallel for schedule(static) if (a.n_tokens > kParallelRows)
  for (int64_t t = 0; t < a.n_tokens; ++t)
    guard.run([&] {
      thread_local std::vector<float> scratch;
      scratch.resize(size_t(a.n * a.d));
      ref::mhc_update(a.x + t * a.n * a.d, a.z + t * a.d, a.post + t * a.n, a.comb + t * a.n * a.n,
                      a.n, a.d, scratch.data());
    });
  guard.rethrow();
}

void mhc_head(const MhcHeadArgs& a) {
  const int64_t n = a.n, D = a.d;
  const std::vector<float> mixes = mhc_mixes(a.fn, a.x, a.n_tokens, n * D, a.norm_eps);
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    float pre[64];
    ref::mhc_head_weights(mixes.data() + t * n, a.base, a.scale, n, a.hc_eps, pre);
    ref::mhc_collapse(a.x + t * n * D, pre, n, D, a.y + t * D);
  }
}

void swiglu(const SwigluArgs& a) { ref::swiglu(a.gate, a.up, a.n, a.limit, a.out); }

}  // namespace dsv4::cpu::official
