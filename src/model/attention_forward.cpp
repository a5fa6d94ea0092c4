// Attention sub-layer (spec section 3): low-rank query, shared-KV key, compressors, the lightning
// indexer, sink attention over window + compressed entries, inverse RoPE and the grouped output.
#include <cmath>
#include <vector>

#include "dsv4/ops/attention.hpp"
#include "dsv4/ops/attention_variants.hpp"
#include "dsv4/ops/compressor.hpp"
#include "dsv4/ops/grouped_output.hpp"
#include "dsv4/ops/lightning_indexer.hpp"
#include "dsv4/ops/rms_norm.hpp"
#include "dsv4/ops/rope.hpp"
#include "layer_forward.hpp"

namespace dsv4::detail {
namespace {

// RoPE on the last `rope_dim` values of each of `n_heads` vectors of `head_dim` in row t.
void rope_heads(float* row, int64_t n_heads, int64_t head_dim, int64_t rope_dim,
                const std::vector<double>& theta, int64_t pos, bool inverse) {
  const int64_t half = rope_dim / 2;
  std::vector<float> cos_a(static_cast<size_t>(half)), sin_a(static_cast<size_t>(half));
  ops::rope_cos_sin(theta, pos, cos_a.data(), sin_a.data());
  for (int64_t h = 0; h < n_heads; ++h)
    ops::rope_rotate(row + h * head_dim + head_dim - rope_dim, half, cos_a.data(), sin_a.data(),
                     inverse);
}

// Feeds T tokens' input rows through a compressor; every completed window appends one entry
// (pooled, RMSNorm'ed, RoPE'd at the window's first position) to `store`.
void compress_chunk(const Model& model, const CompressorWeights& w, CompressorState& state,
                    EntryStore& store, const float* h, int64_t n_tokens, int64_t start) {
  const ModelConfig& c = model.config();
  const int64_t width = state.width, m = state.compress_ratio, out_dim = w.out_dim;
  std::vector<float> kv(size_t(n_tokens * width)), gate(size_t(n_tokens * width));
  linear(model.backend(), h, n_tokens, w.wkv, kv.data());
  linear(model.backend(), h, n_tokens, w.wgate, gate.data());
  std::vector<float> entry(static_cast<size_t>(out_dim));
  const auto& theta = model.rope_theta(true);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t pos = start + t, slot = pos % m;
    state.journal_row(slot);
    float* kv_row = state.kv.data() + slot * width;
    float* gate_row = state.gate.data() + slot * width;
    for (int64_t i = 0; i < width; ++i) {
      kv_row[i] = kv[size_t(t * width + i)];
      gate_row[i] = gate[size_t(t * width + i)] + w.ape[size_t(slot * width + i)];
    }
    if (slot != m - 1) continue;
    const int64_t window_index = pos / m;
    if (state.overlap) {
      const bool has_prev = state.has_prev;
      ops::csa_pool(has_prev ? state.prev_kv_a.data() : nullptr,
                    has_prev ? state.prev_gate_a.data() : nullptr, state.kv.data(),
                    state.gate.data(), m, out_dim, entry.data());
      // This window's A halves become the next entry's previous-window slots.
      state.journal_prev();
      for (int64_t s = 0; s < m; ++s)
        for (int64_t i = 0; i < out_dim; ++i) {
          state.prev_kv_a[size_t(s * out_dim + i)] = state.kv[size_t(s * width + i)];
          state.prev_gate_a[size_t(s * out_dim + i)] = state.gate[size_t(s * width + i)];
        }
      state.has_prev = true;
    } else {
      ops::hca_pool(state.kv.data(), state.gate.data(), m, width, entry.data());
    }
    ops::rms_norm(entry.data(), w.norm.data(), entry.data(), out_dim, float(c.rms_norm_eps));
    rope_heads(entry.data(), 1, out_dim, c.qk_rope_head_dim, theta, window_index * m, false);
    store.append(entry.data());
  }
}

struct IndexerQueries {
  std::vector<float> q;        // [T, H_I, c], RoPE'd
  std::vector<float> weights;  // [T, H_I], divided by sqrt(H_I)
};

IndexerQueries indexer_queries(const Model& model, const IndexerWeights& ix, const float* cq,
                               const float* h, int64_t n_tokens, int64_t start) {
  const ModelConfig& c = model.config();
  const int64_t nh = c.index_n_heads, dim = c.index_head_dim;
  IndexerQueries out{std::vector<float>(size_t(n_tokens * nh * dim)),
                     std::vector<float>(size_t(n_tokens * nh))};
  linear(model.backend(), cq, n_tokens, ix.wq_b, out.q.data());
  linear(model.backend(), h, n_tokens, ix.weights_proj, out.weights.data());
  const float inv_sqrt_heads = 1.0f / std::sqrt(float(nh));
  for (auto& u : out.weights) u *= inv_sqrt_heads;
#pragma omp parallel for schedule(static) if (n_tokens > 1)
  for (int64_t t = 0; t < n_tokens; ++t)
    rope_heads(out.q.data() + t * nh * dim, nh, dim, c.qk_rope_head_dim, model.rope_theta(true),
               start + t, false);
  return out;
}

// Lightning-indexer scores of queries [t0, t0 + nq) against every compressed entry any of them can
// see: scores[tq, w] (row stride n_entries), one GEMM per block of cached keys, then
// Σ_h u_h · ReLU(q_h · K_w) / sqrt(c) per query. Entries a query cannot see are scored too; the
// caller only reads w < its visible count.
void indexer_scores(const Model& model, const IndexerQueries& iq, const EntryStore& keys,
                    int64_t t0, int64_t nq, int64_t n_entries, std::vector<float>& scores,
                    std::vector<float>& dots) {
  const ModelConfig& c = model.config();
  const int64_t nh = c.index_n_heads, dim = c.index_head_dim, block = EntryStore::kBlockEntries;
  const float inv_sqrt_dim = 1.0f / std::sqrt(float(dim));
  scores.assign(size_t(nq * n_entries), 0.0f);
  dots.resize(size_t(nq * nh * block));
  for (int64_t b0 = 0; b0 < n_entries; b0 += block) {
    const int64_t nb = std::min(block, n_entries - b0);
    matmul_transposed(model.backend(), iq.q.data() + t0 * nh * dim, nq * nh, keys.entry(b0), nb,
                      dim, dots.data());
    for (int64_t tq = 0; tq < nq; ++tq) {
      const float* u = iq.weights.data() + (t0 + tq) * nh;
      float* out = scores.data() + tq * n_entries + b0;
      for (int64_t h = 0; h < nh; ++h) {
        const float* row = dots.data() + (tq * nh + h) * nb;
        for (int64_t j = 0; j < nb; ++j) out[j] += u[h] * std::max(row[j], 0.0f);
      }
      for (int64_t j = 0; j < nb; ++j) out[j] *= inv_sqrt_dim;
    }
  }
}

}  // namespace

void attention_forward(const Model& model, int layer, LayerCache& cache, const float* h,
                       int64_t n_tokens, int64_t start, float* out) {
  const ModelConfig& c = model.config();
  const LayerWeights& L = model.weights().layers[size_t(layer)];
  Backend& backend = model.backend();
  const int64_t H = c.num_attention_heads, d = c.head_dim, r = c.qk_rope_head_dim,
                W = c.sliding_window;
  const int64_t m = c.compress_ratio(layer);
  const bool compressed_layer = m > 0, csa = m == kCsaCompressRatio;
  const auto& theta = model.rope_theta(compressed_layer);
  const float eps = float(c.rms_norm_eps);

  // Query: c_q = RMSNorm(wq_a·x); q = wq_b·c_q per head, unweighted RMSNorm, RoPE at t.
  std::vector<float> cq(size_t(n_tokens * c.q_lora_rank)), q(size_t(n_tokens * H * d));
  linear(backend, h, n_tokens, L.wq_a, cq.data());
  ops::rms_norm_rows(cq.data(), L.q_norm.data(), cq.data(), n_tokens, c.q_lora_rank, eps);
  linear(backend, cq.data(), n_tokens, L.wq_b, q.data());
  // Key (= value): RMSNorm(wkv·x), RoPE at t.
  std::vector<float> kv(size_t(n_tokens * d));
  linear(backend, h, n_tokens, L.wkv, kv.data());
  ops::rms_norm_rows(kv.data(), L.kv_norm.data(), kv.data(), n_tokens, d, eps);
#pragma omp parallel for schedule(static) if (n_tokens > 1)
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* qt = q.data() + t * H * d;
    for (int64_t hh = 0; hh < H; ++hh)
      ops::rms_norm(qt + hh * d, static_cast<const float*>(nullptr), qt + hh * d, d, eps);
    rope_heads(qt, H, d, r, theta, start + t, false);
    rope_heads(kv.data() + t * d, 1, d, r, theta, start + t, false);
  }

  if (compressed_layer)
    compress_chunk(model, *L.compressor, cache.compressor, cache.compressed, h, n_tokens, start);
  IndexerQueries iq;
  if (csa) {
    compress_chunk(model, L.indexer->compressor, cache.indexer_compressor, cache.indexer, h,
                   n_tokens, start);
    iq = indexer_queries(model, *L.indexer, cq.data(), h, n_tokens, start);
  }

  std::vector<float> o(size_t(n_tokens * H * d));
  // Queries go in blocks so the indexer's score matrix stays small at any context length.
  constexpr int64_t kQueryBlock = 64;
  std::vector<float> block_scores, dots;
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kQueryBlock) {
    const int64_t nq = std::min(kQueryBlock, n_tokens - t0);
    const int64_t n_scored = csa ? ops::compressed_visible_count(start + t0 + nq - 1, m) : 0;
    if (csa && n_scored > c.index_topk)
      indexer_scores(model, iq, cache.indexer, t0, nq, n_scored, block_scores, dots);
#pragma omp parallel if (nq > 1)
    {
      std::vector<const float*> keys;
      std::vector<float> scores;
      std::vector<int32_t> selected;
#pragma omp for schedule(dynamic, 2)
      for (int64_t t = t0; t < t0 + nq; ++t) {
        const int64_t pos = start + t;
        keys.clear();
        for (int64_t s = ops::SlidingWindowSink::first_visible(pos, W); s <= pos; ++s)
          keys.push_back(s >= start ? kv.data() + (s - start) * d : cache.window.entry(s));
        if (compressed_layer) {
          const int64_t n_visible = ops::compressed_visible_count(pos, m);
          if (csa && n_visible > c.index_topk) {
            ops::select_topk(block_scores.data() + (t - t0) * n_scored, n_visible, c.index_topk,
                             selected);
            for (int32_t w : selected) keys.push_back(cache.compressed.entry(w));
          } else {
            for (int64_t w = 0; w < n_visible; ++w) keys.push_back(cache.compressed.entry(w));
          }
        }
        scores.resize(keys.size());
        float* ot = o.data() + t * H * d;
        ops::attention_with_sink(q.data() + t * H * d, H, d, keys.data(), int64_t(keys.size()),
                                 L.attn_sink.data(), ot, scores.data());
        rope_heads(ot, H, d, r, theta, pos, true);
      }
    }
  }
  for (int64_t t = 0; t < n_tokens; ++t) cache.window.append(kv.data() + t * d);

  const int64_t G = c.o_groups, R = c.o_lora_rank;
  std::vector<float> oa(size_t(n_tokens * G * R));
  throw_if_error(ops::grouped_output_projection(backend, o.data(), n_tokens, G, H * d / G, L.wo_a,
                                                R, oa.data()));
  linear(backend, oa.data(), n_tokens, L.wo_b, out);
}

void matmul_transposed(Backend& backend, const float* x, int64_t rows, const float* w, int64_t out,
                       int64_t in, float* y) {
  linear(backend, x, rows, f32_weights(w, out, in), y);
}

void linear(Backend& backend, const float* x, int64_t rows, const Linear& w, float* y) {
  GemmArgs args;
  args.m = rows, args.n = w.out, args.k = w.in;
  args.a = x, args.lda = w.in, args.w = w, args.c = y, args.ldc = w.out;
  throw_if_error(backend.gemm(args));
}

}  // namespace dsv4::detail
