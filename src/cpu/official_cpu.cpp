// The official numerics on the CPU: each operator applies the reference recipe
// (dsv4/ops/official_numerics.hpp) row by row. Rows (tokens, output features, queries) are
// independent, so they run in parallel without changing a single rounding.
#include "official_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_kernels.hpp"
#include "dsv4/ops/official_numerics.hpp"
#include "parallel_guard.hpp"

namespace dsv4::cpu::official {
namespace ref = ops::official;
namespace {

constexpr int64_t kParallelRows = 16;

// Row o's codes, contiguous: where they lie, or (weights in units) gathered into this thread's
// scratch.
const uint8_t* row_codes(const WeightView& w, int64_t o) {
  if (!w.in_units()) return w.row(o);
  thread_local std::vector<uint8_t> gathered;
  if (gathered.size() < size_t(w.row_bytes())) gathered.resize(size_t(w.row_bytes()));
  w.copy_row_codes(o, gathered.data());
  return gathered.data();
}

// Row o of a block-scaled weight as code values (scales not applied).
void code_values(const WeightView& w, int64_t o, float* out) {
  if (w.format == WeightFormat::kFp8Block)
    kernels().official.fp8_values(row_codes(w, o), w.in, out);
  else
    kernels().official.fp4_values(row_codes(w, o), w.in, out);
}

// Row o dequantised (a bf16 or fp32 linear over a block-scaled weight, e.g. wo_a): code values
// times their block scales, exact.
void dequantized_row(const WeightView& w, int64_t o, float* out) {
  if (!is_block_scaled(w.format)) return w.decode_row(o, out);
  code_values(w, o, out);
  const WeightFormatTraits traits = weight_format_traits(w.format);
  const int64_t block = traits.block_in;
  const uint8_t* scales = w.scale_row((w.first_row + o) / traits.block_out);
  for (int64_t i0 = 0; i0 < w.in; i0 += block) {
    const float scale = ue8m0_to_float(scales[i0 / block]);
    for (int64_t i = i0; i < std::min(w.in, i0 + block); ++i) out[i] *= scale;
  }
}

// Scratch that lives as long as the thread: the official operators run every step, and fresh
// multi-megabyte buffers would cost a page fault per page each time.
template <class T>
T* scratch(std::vector<T>& buffer, size_t n) {
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// The mHC mixes of every token of a site: x [T, width], fn [rows, width] (decoded once unless
// stored as fp32).
std::vector<float> mhc_mixes(const WeightView& fn, const float* x, int64_t n_tokens, int64_t width,
                             float eps) {
  std::vector<float> mixes(size_t(n_tokens * fn.out));
  thread_local std::vector<float> decoded;
  const float* fn_rows = reinterpret_cast<const float*>(fn.row(0));
  if (fn.format != WeightFormat::kF32 || fn.row_stride != 0 || fn.in_units()) {
    float* rows = scratch(decoded, size_t(fn.out * width));
    for (int64_t r = 0; r < fn.out; ++r) fn.decode_row(r, rows + r * width);
    fn_rows = rows;
  }
#pragma omp parallel for schedule(static) if (n_tokens > kParallelRows)
  for (int64_t t = 0; t < n_tokens; ++t)
    ref::mhc_mixes(x + t * width, width, fn_rows, fn.out, eps, mixes.data() + t * fn.out,
                   kernels().official.dot_f64);
  return mixes;
}

}  // namespace

void gemm(const GemmArgs& g) {
  const WeightView& w = g.w;
  const bool quantized = g.numerics == GemmNumerics::kOfficialLinear && is_block_scaled(w.format);
  const bool to_bf16 = g.numerics != GemmNumerics::kOfficialF32;
  // Activations act-quantised once per row (FP8/FP4 linears only).
  std::vector<ref::QuantizedRow> rows(quantized ? size_t(g.m) : 0);
  for (int64_t i = 0; i < int64_t(rows.size()); ++i)
    rows[size_t(i)] = ref::act_quant_row(g.a + i * g.lda, g.k, 128);
  // Decode (one row): the codes are decoded on the fly, FP4 against the row's even and odd
  // elements. Prefill: each weight row is decoded once for all the activation rows.
  const bool one_row = quantized && g.m == 1;
  std::vector<float> even, odd;
  if (one_row && w.format == WeightFormat::kFp4Block) {
    even.resize(size_t(g.k / 2)), odd.resize(size_t(g.k / 2));
    for (int64_t j = 0; j < g.k / 2; ++j)
      even[size_t(j)] = rows[0].q[size_t(2 * j)], odd[size_t(j)] = rows[0].q[size_t(2 * j + 1)];
  }
  const KernelTable& kt = kernels();
  ParallelGuard guard;
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < g.n; ++o)
    guard.run([&] {
      thread_local std::vector<float> weight_row;
      thread_local std::vector<double> sums;
      float* values = scratch(weight_row, size_t(g.k));
      double* block_sums = scratch(sums, size_t(g.k / 32 + 1));
      if (one_row) {
        if (w.format == WeightFormat::kFp8Block)
          kt.official.fp8_block_sums(rows[0].q.data(), row_codes(w, o), g.k, block_sums);
        else
          kt.official.fp4_block_sums(even.data(), odd.data(), row_codes(w, o), g.k, block_sums);
        g.c[o] = ref::combine_block_sums(rows[0], w, o, block_sums);
        return;
      }
      if (quantized) {
        code_values(w, o, values);
        const int64_t block = weight_format_traits(w.format).block_in;
        for (int64_t i = 0; i < g.m; ++i) {
          kt.official.block_sums(rows[size_t(i)].q.data(), values, g.k, block, block_sums);
          g.c[i * g.ldc + o] = ref::combine_block_sums(rows[size_t(i)], w, o, block_sums);
        }
        return;
      }
      // F32 and BF16 rows are read where they lie; other formats are dequantised first.
      const float* f32_row = nullptr;
      if (w.format == WeightFormat::kF32) {
        f32_row = reinterpret_cast<const float*>(row_codes(w, o));
      } else if (w.format != WeightFormat::kBF16) {
        dequantized_row(w, o, values);
        f32_row = values;
      }
      for (int64_t i = 0; i < g.m; ++i) {
        const float* x = g.a + i * g.lda;
        const auto y = float(f32_row ? kt.official.dot_f64(x, f32_row, g.k)
                                     : kt.official.dot_bf16_f64(x, row_codes(w, o), g.k));
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
  thread_local std::vector<float> decoded_buffer;
  thread_local std::vector<const float*> key_buffer;
  float* decoded = scratch(decoded_buffer, a.key_entries ? size_t(a.n_keys * d) : 0);
  const float** keys = scratch(key_buffer, size_t(a.n_keys));
  for (int64_t j = 0; j < a.n_keys; ++j) {
    keys[j] = nullptr;
    if (!a.key_entries) {
      keys[j] = a.keys[j];
    } else if (a.key_entries[j]) {
      a.key_codec.decode(a.key_entries[j], decoded + j * d);
      keys[j] = decoded + j * d;
    }
  }
  const auto scale = float(std::pow(double(d), -0.5));
  ref::sparse_attn(a.q, a.n_heads, d, keys, a.n_keys, a.sinks, scale, a.out);
}

void indexer_topk(const IndexerTopkArgs& a) {
  const int64_t c = a.head_dim, H = a.n_heads;
  int64_t most = 0;
  for (int64_t t = 0; t < a.n_queries; ++t) most = std::max(most, a.n_visible[t]);
  // Every visible key decoded once (the official mode is the reference, not the fast path).
  thread_local std::vector<float> key_buffer;
  float* keys = scratch(key_buffer, size_t(most * c));
  const size_t entry_bytes = a.key_block_entries ? a.key_codec.bytes() : 0;
  for (int64_t w = 0; w < most; ++w) {
    const int64_t b = w / a.block_entries, i = w % a.block_entries;
    if (a.key_block_entries)
      a.key_codec.decode(a.key_block_entries[b] + size_t(i) * entry_bytes, keys + w * c);
    else
      std::copy_n(a.key_blocks[b] + i * c, c, keys + w * c);
  }
  ParallelGuard guard;
#pragma omp parallel for schedule(dynamic, 1) if (a.n_queries > 1)
  for (int64_t t = 0; t < a.n_queries; ++t)
    guard.run([&] {
      const int64_t n = a.n_visible[t];
      thread_local std::vector<float> scores;
      scores.resize(size_t(n));
      for (int64_t w = 0; w < n; ++w)
        scores[size_t(w)] = ref::index_score(a.q + t * H * c, a.weights + t * H, H, c, keys + w * c,
                                             kernels().official.dot_f64);
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
