// Attention sub-layer (spec section 3): low-rank query, shared-KV key, compressors, the lightning
// indexer, sink attention over window + compressed entries, inverse RoPE and the grouped output.
// Every computation is a backend operator; this file only decides what to call on which rows and
// keeps the cache's bookkeeping.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <span>

#include "dsv4/ops/attention_variants.hpp"
#include "dsv4/ops/grouped_output.hpp"
#include "dsv4/ops/official_numerics.hpp"
#include "layer_forward.hpp"

namespace dsv4::detail {
namespace {

// RoPE (or its inverse) on the last r dims of each of `n_heads` head vectors in `rows` rows of
// `row_stride` values, row i at position first + i·step.
void rope_rows(const Model& model, bool compressed_layer, float* x, int64_t rows,
               int64_t row_stride, int64_t n_heads, int64_t head_dim, int64_t first, int64_t step,
               bool inverse) {
  const ModelConfig& c = model.config();
  RopeArgs a;
  a.x = x, a.rows = rows, a.row_stride = row_stride, a.n_heads = n_heads, a.head_dim = head_dim;
  a.rope_dim = c.qk_rope_head_dim, a.theta = model.rope_theta(compressed_layer).data();
  a.first_position = first, a.position_step = step, a.inverse = inverse;
  a.numerics = model.numerics();
  throw_if_error(model.backend().rope(a));
}

// A compressor's kv and gate projections of `n_rows` input rows, in the caller's scope: one
// pass over its weights for every sequence of the forward pass.
struct CompressorRows {
  std::span<float> kv, gate;  // [rows, width]
};
CompressorRows compressor_projections(const Model& model, const CompressorWeights& w,
                                      const float* h, int64_t n_rows, int64_t width,
                                      Workspace::Scope& out) {
  CompressorRows rows{out.take<float>(size_t(n_rows * width)),
                      out.take<float>(size_t(n_rows * width))};
  linear(model.backend(), h, n_rows, w.wkv, rows.kv.data(), fp32_linear_numerics(model));
  linear(model.backend(), h, n_rows, w.wgate, rows.gate.data(), fp32_linear_numerics(model));
  return rows;
}

// Feeds one sequence's projected rows (rows seq.row on) through its compressor; every completed
// window appends one entry (pooled, RMSNorm'ed, RoPE'd at the window's first position) to `store`.
void feed_compressor(const Model& model, const CompressorWeights& w, CompressorState& state,
                     EntryStore& store, const CompressorRows& rows, const SequenceRows& seq,
                     std::span<float> entry) {
  const ModelConfig& c = model.config();
  Backend& backend = model.backend();
  const int64_t width = state.width, m = state.compress_ratio, out_dim = w.out_dim;
  for (int64_t t = 0; t < seq.n_tokens; ++t) {
    const int64_t pos = seq.start + t, slot = pos % m;
    const float* kv = rows.kv.data() + (seq.row + t) * width;
    const float* gate = rows.gate.data() + (seq.row + t) * width;
    state.journal_row(slot);
    float* kv_row = state.kv.data() + slot * width;
    float* gate_row = state.gate.data() + slot * width;
    for (int64_t i = 0; i < width; ++i) {
      kv_row[i] = kv[i];
      gate_row[i] = gate[i] + w.ape[size_t(slot * width + i)];
    }
    if (slot != m - 1) continue;
    const int64_t window_index = pos / m;
    // A window whose entry is already stored keeps it: a session rebuilding its window by
    // recomputation (truncate, restores without the ring) feeds positions whose compressed
    // entries it holds, and only the compressor state has to move on.
    const bool stored = window_index < store.size();
    if (!stored) {
      CompressPoolArgs pool;
      pool.kv = state.kv.data(), pool.gate = state.gate.data(), pool.m = m, pool.out_dim = out_dim;
      pool.overlap = state.overlap, pool.out = entry.data(), pool.numerics = model.numerics();
      if (state.overlap && state.has_prev) {
        pool.prev_kv_a = state.prev_kv_a.data();
        pool.prev_gate_a = state.prev_gate_a.data();
      }
      throw_if_error(backend.compress_pool(pool));
    }
    if (state.overlap) {
      // This window's A halves become the next entry's previous-window slots.
      state.journal_prev();
      for (int64_t s = 0; s < m; ++s)
        for (int64_t i = 0; i < out_dim; ++i) {
          state.prev_kv_a[size_t(s * out_dim + i)] = state.kv[size_t(s * width + i)];
          state.prev_gate_a[size_t(s * out_dim + i)] = state.gate[size_t(s * width + i)];
        }
      state.has_prev = true;
    }
    if (stored) continue;
    rms_norm_rows(backend, entry.data(), w.norm.data(), 1, out_dim, float(c.rms_norm_eps),
                  model.numerics());
    rope_rows(model, true, entry.data(), 1, out_dim, 1, out_dim, window_index * m, 0, false);
    store.append(entry.data());
  }
}

// Runs body(i) for every sequence, on threads of their own when `across` (a batched decode
// step: one position each, whose compressor, indexer and attention calls then run on one thread
// each; their results do not depend on the thread count, and each sequence writes only its own
// cache). The first failure is thrown after the loop. Otherwise the loop runs outside any OpenMP
// construct: even an inactive one (`if (false)`) would make the kernels' own parallel regions
// nested ones, for which libgomp starts fresh threads on every call.
template <class Body>
void for_each_sequence(size_t n, bool across, Body body) {
  if (!across) {
    for (size_t i = 0; i < n; ++i) throw_if_error(body(i));
    return;
  }
  // Kept between calls (decode allocates nothing); named through a local reference, since a
  // worker thread would see its own thread_local.
  thread_local std::vector<Status> kept;
  kept.assign(n, Status::ok());
  std::vector<Status>& failures = kept;
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < n; ++i) failures[i] = capture_status([&] { throw_if_error(body(i)); });
  for (const Status& s : failures) throw_if_error(s);
}

// Runs every sequence's rows through the compressor of its layer cache that `pick` names (on
// threads of their own when `across`, see for_each_sequence).
template <class Pick>
void compress_rows(const Model& model, const CompressorWeights& w,
                   std::span<const SequenceRows> sequences, int layer, const float* h,
                   int64_t n_rows, bool across, Pick pick, Workspace& ws) {
  Workspace::Scope scope(ws);
  const int64_t width = pick(sequences[0].cache->layer(layer)).first->width;
  const CompressorRows rows = compressor_projections(model, w, h, n_rows, width, scope);
  const auto entries = scope.take<float>(sequences.size() * size_t(w.out_dim));
  for_each_sequence(sequences.size(), across, [&](size_t i) {
    auto [state, store] = pick(sequences[i].cache->layer(layer));
    feed_compressor(model, w, *state, *store, rows, sequences[i],
                    entries.subspan(i * size_t(w.out_dim), size_t(w.out_dim)));
    return Status::ok();
  });
}

// The compressed entries each query of the chunk attends to (CSA: the indexer's top-k).
struct Selection {
  std::span<int64_t> n_visible, n_selected;  // [T]
  std::span<int32_t> ids;                    // [T, top_k]
};

// The indexer's query heads and their weights for every row of the pass, in the caller's scope.
struct IndexerQueries {
  std::span<float> q;  // [rows, index_n_heads, index_head_dim], not yet RoPE'd
  std::span<float> u;  // [rows, index_n_heads]
};
IndexerQueries indexer_queries(const Model& model, const IndexerWeights& ix, const float* cq,
                               const float* h, int64_t n_rows, Workspace::Scope& out) {
  const ModelConfig& c = model.config();
  const int64_t nh = c.index_n_heads, dim = c.index_head_dim;
  IndexerQueries iq{out.take<float>(size_t(n_rows * nh * dim)),
                    out.take<float>(size_t(n_rows * nh))};
  linear(model.backend(), cq, n_rows, ix.wq_b, iq.q.data(), linear_numerics(model));
  linear(model.backend(), h, n_rows, ix.weights_proj, iq.u.data(), linear_numerics(model));
  if (model.official()) {
    // The official weights carry 1/sqrt(c) too: bf16(u · fl32(c^-1/2 · H^-1/2)).
    const auto scale = float(std::pow(double(dim), -0.5) * std::pow(double(nh), -0.5));
    for (auto& x : iq.u) x = ops::official::round_bf16(ops::official::mul32(x, scale));
  } else {
    const float inv_sqrt_heads = 1.0f / std::sqrt(float(nh));
    for (auto& x : iq.u) x *= inv_sqrt_heads;
  }
  return iq;
}

// Scratch of one sequence's indexer selection: the key block table (one pointer per 64 keys,
// 1/256 of the keys' own bytes) and one encoded query row.
struct IndexerScratch {
  std::span<const uint8_t*> blocks;
  std::span<uint8_t> packed;
};
IndexerScratch indexer_scratch(const EntryStore& keys, Workspace::Scope& scope) {
  return {scope.take<const uint8_t*>(size_t(keys.n_blocks())),
          scope.take<uint8_t>(keys.codec().bytes())};
}

// One sequence's top-k selections (its rows of `sel`), against its own indexer keys, which must
// be resident (the disk tier reads spilled ones back before: this may run on a worker thread).
void indexer_select(const Model& model, const EntryStore& keys, const IndexerQueries& iq,
                    const SequenceRows& seq, int64_t m, const Selection& sel,
                    const IndexerScratch& scratch) {
  const ModelConfig& c = model.config();
  const int64_t nh = c.index_n_heads, dim = c.index_head_dim, k = c.index_topk;
  float* q = iq.q.data() + seq.row * nh * dim;
  rope_rows(model, true, q, seq.n_tokens, nh * dim, nh, dim, seq.start, 1, false);
  for (int64_t t = 0; t < seq.n_tokens; ++t)
    sel.n_visible[size_t(seq.row + t)] = ops::compressed_visible_count(seq.start + t, m);
  const EntryCodec& codec = keys.codec();
  if (model.official()) {
    // The official queries: Hadamard-rotated and fake-quantised on the FP4 grid, exactly as the
    // keys are stored (encode then decode with the keys' codec).
    for (int64_t r = 0; r < seq.n_tokens * nh; ++r) {
      codec.encode(q + r * dim, scratch.packed.data());
      codec.decode(scratch.packed.data(), q + r * dim);
    }
  } else if (codec.rotate) {
    // Keys stored rotated (packed FP4): rotate the queries alike, so q·k is what it was.
    for (int64_t r = 0; r < seq.n_tokens * nh; ++r)
      quant::hadamard_rotate(q + r * dim, dim, q + r * dim);
  }
  for (int64_t b = 0; b < keys.n_blocks(); ++b) scratch.blocks[size_t(b)] = keys.block(b);
  IndexerTopkArgs a;
  a.q = q, a.weights = iq.u.data() + seq.row * nh, a.n_queries = seq.n_tokens, a.n_heads = nh;
  a.head_dim = dim, a.top_k = k, a.key_block_entries = scratch.blocks.data(), a.key_codec = codec;
  a.block_entries = keys.block_entries();
  a.n_visible = sel.n_visible.data() + seq.row, a.selected = sel.ids.data() + seq.row * k;
  a.n_selected = sel.n_selected.data() + seq.row;
  a.numerics = model.numerics();
  throw_if_error(model.backend().indexer_topk(a));
}

// The official key list's window part for a query at `pos`. The official kernel walks a list of
// indices in blocks of 64, and −1 entries hold their places: a prefill from position 0 lists
// min(T, W) window slots, a decode step W (official get_window_topk_idxs), so a position of the
// session's first chunk (T = first_chunk) keeps that chunk's padding, also when a rebuild
// recomputes it. The exact mode lists only the visible entries.
int64_t official_window_slots(const Model& model, int64_t pos, int64_t first_chunk) {
  const int64_t W = model.config().sliding_window;
  return pos < first_chunk ? std::min(first_chunk, W) : W;
}

// Makes the blocks of `store` that one sequence's selections name resident (the disk tier's
// prefetch: the indexer's top-k says which compressed blocks attention will read).
void ensure_selected_resident(const EntryStore& store, const Selection& sel,
                              const SequenceRows& seq, int64_t k) {
  if (!store.has_disk_tier()) return;
  thread_local std::vector<int64_t> blocks;
  blocks.clear();
  for (int64_t t = seq.row; t < seq.row + seq.n_tokens; ++t)
    for (int64_t i = 0; i < sel.n_selected[size_t(t)]; ++i)
      blocks.push_back(sel.ids[size_t(t * k + i)] / store.block_entries());
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  store.ensure_resident(blocks);
}

// The selections of a chunk as [T, k] rows, −1 past each row's count.
void record_selection(const Selection& sel, int64_t n_tokens, int64_t k,
                      std::vector<int32_t>& out) {
  out.assign(size_t(n_tokens * k), -1);
  for (int64_t t = 0; t < n_tokens; ++t)
    std::copy_n(sel.ids.data() + t * k, sel.n_selected[size_t(t)], out.data() + t * k);
}

// Makes resident the compressed entries one sequence's queries will read (before any parallel
// loop: the disk tier reads them back): CSA the indexer's selections, HCA every visible entry.
void make_entries_resident(const Model& model, int layer, const SequenceRows& seq,
                           const Selection& sel) {
  const ModelConfig& c = model.config();
  const int64_t m = c.compress_ratio(layer);
  EntryStore& entries = seq.cache->layer(layer).compressed;
  if (m == kCsaCompressRatio) {
    ensure_selected_resident(entries, sel, seq, c.index_topk);
  } else if (m > 0) {
    const int64_t visible = ops::compressed_visible_count(seq.start + seq.n_tokens - 1, m);
    const int64_t per_block = entries.block_entries();
    entries.ensure_resident(0, (visible + per_block - 1) / per_block);
  }
}

// Scratch of one sequence's attention: key pointer lists (one per thread of its loop over
// positions) and its own new keys in the cache's format.
struct AttentionScratch {
  std::span<const uint8_t*> key_lists;  // [n_lists, max_keys]
  int64_t max_keys = 0;
  int n_lists = 1;
  std::span<uint8_t> new_entries;  // [n_tokens, entry bytes]
};
AttentionScratch attention_scratch(const Model& model, int layer, const SequenceRows& seq,
                                   int n_lists, Workspace::Scope& scope) {
  const ModelConfig& c = model.config();
  const int64_t m = c.compress_ratio(layer), W = c.sliding_window;
  const int64_t last = seq.start + seq.n_tokens - 1;
  // The longest list: the window, then the selected (CSA) or all visible (HCA) compressed
  // entries of the last position.
  const int64_t window_slots = model.official() ? W : std::min(W, last + 1);
  AttentionScratch scratch;
  scratch.max_keys = window_slots + (m == kCsaCompressRatio ? c.index_topk
                                     : m > 0                ? ops::compressed_visible_count(last, m)
                                                            : 0);
  scratch.n_lists = n_lists;
  scratch.key_lists = scope.take<const uint8_t*>(size_t(n_lists * scratch.max_keys));
  scratch.new_entries =
      scope.take<uint8_t>(size_t(seq.n_tokens) * seq.cache->layer(layer).window.codec().bytes());
  return scratch;
}

// One sequence's sink attention: its queries (rows of q) over its window (the cache's ring and
// the sequence's own new keys, kv) and its selected (CSA) or visible (HCA) compressed entries,
// into its rows of o. Its positions run on scratch.n_lists threads; the entries it reads must be
// resident (make_entries_resident). Returns the first failure.
Status attend_rows(const Model& model, int layer, const SequenceRows& seq, const float* q,
                   const float* kv, const Selection& sel, float* o,
                   const AttentionScratch& scratch) {
  const ModelConfig& c = model.config();
  const LayerWeights& L = model.weights().layers[size_t(layer)];
  const LayerCache& cache = seq.cache->layer(layer);
  const int64_t H = c.num_attention_heads, d = c.head_dim, W = c.sliding_window;
  const int64_t m = c.compress_ratio(layer), n_tokens = seq.n_tokens, start = seq.start;
  const bool compressed_layer = m > 0, csa = m == kCsaCompressRatio;
  const Numerics numerics = model.numerics();
  q += seq.row * H * d, kv += seq.row * d, o += seq.row * H * d;
  // The sequence's own keys in the cache's format, so a key reads the same whether it comes from
  // this pass or from the cache (prefill, chunked prefill and decode agree).
  const EntryCodec& codec = cache.window.codec();
  const size_t entry_bytes = codec.bytes();
  uint8_t* new_entries = scratch.new_entries.data();
  for (int64_t t = 0; t < n_tokens; ++t)
    codec.encode(kv + t * d, new_entries + size_t(t) * entry_bytes);
  // The keys of position t (into `keys`) and its attention call, which reads them once for all
  // heads.
  const auto attend_position = [&](int64_t t, const uint8_t** keys) {
    const int64_t pos = start + t;
    int64_t n_keys = 0;
    for (int64_t s = ops::SlidingWindowSink::first_visible(pos, W); s <= pos; ++s)
      keys[n_keys++] =
          s >= start ? new_entries + size_t(s - start) * entry_bytes : cache.window.entry(s);
    if (numerics == Numerics::kOfficial)  // the official −1 slots
      while (n_keys < official_window_slots(model, pos, seq.first_chunk)) keys[n_keys++] = nullptr;
    if (csa) {
      const int32_t* ids = sel.ids.data() + (seq.row + t) * c.index_topk;
      for (int64_t i = 0; i < sel.n_selected[size_t(seq.row + t)]; ++i)
        keys[n_keys++] = cache.compressed.entry(ids[i]);
    } else if (compressed_layer) {
      const int64_t n_visible = ops::compressed_visible_count(pos, m);
      for (int64_t w = 0; w < n_visible; ++w) keys[n_keys++] = cache.compressed.entry(w);
    }
    AttentionArgs a;
    a.q = q + t * H * d, a.n_heads = H, a.head_dim = d;
    a.key_entries = keys, a.key_codec = codec, a.n_keys = n_keys;
    a.sinks = L.attn_sink.data(), a.out = o + t * H * d, a.numerics = numerics;
    return model.backend().attention(a);
  };
  // One list: no OpenMP construct at all, so the attention kernel may split the keys across the
  // threads itself (see for_each_sequence). Several: one query position per task.
  if (scratch.n_lists == 1) {
    for (int64_t t = 0; t < n_tokens; ++t)
      if (Status s = attend_position(t, scratch.key_lists.data()); !s) return s;
    return Status::ok();
  }
  Status failed;
#pragma omp parallel num_threads(scratch.n_lists)
  {
    const uint8_t** keys = scratch.key_lists.data() + omp_get_thread_num() * scratch.max_keys;
#pragma omp for schedule(dynamic, 2)
    for (int64_t t = 0; t < n_tokens; ++t) {
      Status s = attend_position(t, keys);
      if (!s) {
#pragma omp critical(dsv4_attention_status)
        if (failed.is_ok()) failed = s;
      }
    }
  }
  return failed;
}

// After attention: inverse RoPE on the sequence's outputs, and its new keys join the window.
void finish_sequence(const Model& model, int layer, const SequenceRows& seq,
                     const AttentionScratch& scratch, float* o) {
  const ModelConfig& c = model.config();
  const int64_t H = c.num_attention_heads, d = c.head_dim;
  rope_rows(model, c.compress_ratio(layer) > 0, o + seq.row * H * d, seq.n_tokens, H * d, H, d,
            seq.start, 1, true);
  EntryStore& window = seq.cache->layer(layer).window;
  for (int64_t t = 0; t < seq.n_tokens; ++t)
    window.append_encoded(scratch.new_entries.data() + size_t(t) * window.codec().bytes());
}

}  // namespace

void check_abort(const AppendOptions& options) {
  if (options.should_abort && options.should_abort(options.abort_user))
    fail(StatusCode::kCancelled, "append cancelled by the abort callback");
}

void attention_forward(const Model& model, int layer, std::span<const SequenceRows> sequences,
                       const float* h, int64_t n_rows, float* out, Workspace& ws,
                       LayerDecisions* decisions) {
  const ModelConfig& c = model.config();
  const LayerWeights& L = model.weights().layers[size_t(layer)];
  Backend& backend = model.backend();
  const int64_t H = c.num_attention_heads, d = c.head_dim;
  const int64_t m = c.compress_ratio(layer);
  const bool compressed_layer = m > 0, csa = m == kCsaCompressRatio;
  const float eps = float(c.rms_norm_eps);
  const Numerics numerics = model.numerics();
  const GemmNumerics lin = linear_numerics(model);
  // A batched decode step runs its sequences' compressors, indexer and attention (with the
  // window appends) on threads of their own; residency (the disk tier) stays on this thread.
  const bool across = sequences.size() > 1 &&
                      std::all_of(sequences.begin(), sequences.end(),
                                  [](const SequenceRows& seq) { return seq.n_tokens == 1; });

  // Query: c_q = RMSNorm(wq_a·x); q = wq_b·c_q per head, unweighted RMSNorm, RoPE at t.
  Workspace::Scope scope(ws);
  const auto cq = scope.take<float>(size_t(n_rows * c.q_lora_rank));
  const auto q = scope.take<float>(size_t(n_rows * H * d));
  linear(backend, h, n_rows, L.wq_a, cq.data(), lin);
  rms_norm_rows(backend, cq.data(), L.q_norm.data(), n_rows, c.q_lora_rank, eps, numerics);
  linear(backend, cq.data(), n_rows, L.wq_b, q.data(), lin);
  rms_norm_rows(backend, q.data(), nullptr, n_rows * H, d, eps, numerics);
  // Key (= value): RMSNorm(wkv·x), RoPE at t.
  const auto kv = scope.take<float>(size_t(n_rows * d));
  linear(backend, h, n_rows, L.wkv, kv.data(), lin);
  rms_norm_rows(backend, kv.data(), L.kv_norm.data(), n_rows, d, eps, numerics);
  for (const SequenceRows& seq : sequences) {
    rope_rows(model, compressed_layer, q.data() + seq.row * H * d, seq.n_tokens, H * d, H, d,
              seq.start, 1, false);
    rope_rows(model, compressed_layer, kv.data() + seq.row * d, seq.n_tokens, d, 1, d, seq.start, 1,
              false);
  }

  if (compressed_layer)
    compress_rows(
        model, *L.compressor, sequences, layer, h, n_rows, across,
        [](LayerCache& lc) {
          return std::pair{&lc.compressor, &lc.compressed};
        },
        ws);
  Selection sel;
  if (csa) {
    compress_rows(
        model, L.indexer->compressor, sequences, layer, h, n_rows, across,
        [](LayerCache& lc) {
          return std::pair{&lc.indexer_compressor, &lc.indexer};
        },
        ws);
    sel = {scope.take<int64_t>(size_t(n_rows)), scope.take<int64_t>(size_t(n_rows)),
           scope.take<int32_t>(size_t(n_rows * c.index_topk))};
    const IndexerQueries iq = indexer_queries(model, *L.indexer, cq.data(), h, n_rows, scope);
    thread_local std::vector<IndexerScratch> kept;  // decode allocates nothing
    kept.clear();
    std::vector<IndexerScratch>& scratch = kept;  // the workers see this thread's vector
    for (const SequenceRows& seq : sequences) {
      const EntryStore& keys = seq.cache->layer(layer).indexer;
      // The keys are scanned in full: every block resident (the disk tier reads them back).
      keys.ensure_resident(0, keys.n_blocks());
      scratch.push_back(indexer_scratch(keys, scope));
    }
    for_each_sequence(sequences.size(), across, [&](size_t i) {
      indexer_select(model, sequences[i].cache->layer(layer).indexer, iq, sequences[i], m, sel,
                     scratch[i]);
      return Status::ok();
    });
    if (decisions) record_selection(sel, n_rows, c.index_topk, decisions->indexer);
  }

  const auto o = scope.take<float>(size_t(n_rows * H * d));
  thread_local std::vector<AttentionScratch> kept;  // decode allocates nothing
  kept.clear();
  std::vector<AttentionScratch>& scratch = kept;  // the workers see this thread's vector
  for (const SequenceRows& seq : sequences) {
    make_entries_resident(model, layer, seq, sel);
    const int n_lists = seq.n_tokens > 1 && !across ? omp_get_max_threads() : 1;
    scratch.push_back(attention_scratch(model, layer, seq, n_lists, scope));
  }
  for_each_sequence(sequences.size(), across, [&](size_t i) {
    if (Status s =
            attend_rows(model, layer, sequences[i], q.data(), kv.data(), sel, o.data(), scratch[i]);
        !s)
      return s;
    finish_sequence(model, layer, sequences[i], scratch[i], o.data());
    return Status::ok();
  });

  const int64_t G = c.o_groups, R = c.o_lora_rank;
  const auto oa = scope.take<float>(size_t(n_rows * G * R));
  // wo_a: a bf16 einsum in the official code (convert.py dequantises it to bf16).
  throw_if_error(ops::grouped_output_projection(
      backend, o.data(), n_rows, G, H * d / G, L.wo_a, R, oa.data(),
      model.official() ? GemmNumerics::kOfficialBf16 : GemmNumerics::kExact));
  linear(backend, oa.data(), n_rows, L.wo_b, out, lin);
}

void rms_norm_rows(Backend& backend, float* x, const float* weight, int64_t rows, int64_t n,
                   float eps, Numerics numerics) {
  throw_if_error(backend.rms_norm({x, weight, x, rows, n, eps, numerics}));
}

void round_to_bf16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = ops::official::round_bf16(x[i]);
}

void matmul_transposed(Backend& backend, const float* x, int64_t rows, const float* w, int64_t out,
                       int64_t in, float* y) {
  linear(backend, x, rows, f32_weights(w, out, in), y);
}

GemmArgs linear_args(const float* x, int64_t rows, const Linear& w, float* y,
                     GemmNumerics numerics) {
  GemmArgs args;
  args.m = rows, args.n = w.out, args.k = w.in;
  args.a = x, args.lda = w.in, args.w = w, args.c = y, args.ldc = w.out;
  args.numerics = numerics;
  return args;
}

void linear(Backend& backend, const float* x, int64_t rows, const Linear& w, float* y,
            GemmNumerics numerics) {
  throw_if_error(backend.gemm(linear_args(x, rows, w, y, numerics)));
}

}  // namespace dsv4::detail
