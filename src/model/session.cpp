// Session: the decoder stack over a chunk of tokens, with mHC around every sub-layer (spec
// sections 2-4), and the bookkeeping that makes chunked prefill and decode agree.
#include "dsv4/model/session.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <tuple>

#include "layer_forward.hpp"

namespace dsv4 {
namespace {

// Per-token mHC coefficients of one site over a chunk (in the caller's workspace scope).
struct MhcCoefficients {
  std::span<float> post;  // [T, n]
  std::span<float> comb;  // [T, n, n]
};

// The mHC weights of a site as the fp32 [rows, n·D] matrix the backend multiplies by.
WeightView mhc_matrix(const std::vector<float>& fn, int64_t rows) {
  return f32_weights(fn.data(), rows, int64_t(fn.size()) / rows);
}

// Collapses the streams into the sub-layer input y[T, D] and returns the update coefficients.
MhcCoefficients mhc_pre(const Model& model, const MhcWeights& w, const float* x, int64_t n_tokens,
                        float* y, Workspace::Scope& scope) {
  const ModelConfig& c = model.config();
  const int64_t n = c.hc_mult;
  MhcCoefficients coef{scope.take<float>(size_t(n_tokens * n)),
                       scope.take<float>(size_t(n_tokens * n * n))};
  MhcPreArgs a;
  a.x = x, a.n_tokens = n_tokens, a.n = n, a.d = c.hidden_size;
  a.fn = mhc_matrix(w.fn, (2 + n) * n), a.base = w.base.data(), a.scale = w.scale.data();
  a.sinkhorn_iters = c.hc_sinkhorn_iters, a.hc_eps = float(c.hc_eps);
  a.norm_eps = float(c.rms_norm_eps);
  a.y = y, a.post = coef.post.data(), a.comb = coef.comb.data();
  a.numerics = model.numerics();
  throw_if_error(model.backend().mhc_pre(a));
  return coef;
}

void mhc_post(const Model& model, const MhcCoefficients& coef, const float* z, int64_t n_tokens,
              float* x) {
  const ModelConfig& c = model.config();
  throw_if_error(model.backend().mhc_post({x, z, coef.post.data(), coef.comb.data(), n_tokens,
                                           c.hc_mult, c.hidden_size, model.numerics()}));
}

// Applies the session's thread count (or the model's) to this thread's OpenMP regions for one
// append, and restores it.
class ThreadCountScope {
 public:
  explicit ThreadCountScope(int n) : previous_(omp_get_max_threads()), active_(n > 0) {
    if (active_) omp_set_num_threads(n);
  }
  ~ThreadCountScope() {
    if (active_) omp_set_num_threads(previous_);
  }
  ThreadCountScope(const ThreadCountScope&) = delete;
  ThreadCountScope& operator=(const ThreadCountScope&) = delete;

 private:
  int previous_;
  bool active_;
};

}  // namespace

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& options)
    : model_(std::move(model)), options_(options), cache_(model_->config(), options.kv_format) {
  // Sized for a decode step at creation: decoding allocates nothing afterwards.
  workspace_.reserve(workspace_bytes(model_->config(), 1));
  if (options_.ram_budget > 0) {
    spill_ = SpillFile::create(options_.spill_dir);
    for (int64_t l = 0; l < cache_.n_layers(); ++l) {
      if (model_->config().compress_ratio(l) <= 0) continue;
      cache_.layer(l).compressed.attach_spill_file(spill_, options_.lossy_cold_entries);
      if (model_->config().compress_ratio(l) == kCsaCompressRatio)
        cache_.layer(l).indexer.attach_spill_file(spill_);
    }
  }
}

void Session::enforce_ram_budget() {
  if (!spill_) return;
  const auto budget = size_t(options_.ram_budget);
  size_t in_ram = 0;
  spill_candidates_.clear();
  for (int64_t l = 0; l < cache_.n_layers(); ++l) {
    LayerCache& lc = cache_.layer(l);
    for (EntryStore* store : {&lc.compressed, &lc.indexer}) {
      in_ram += store->bytes_in_ram();
      for (int64_t b = 0; b < store->n_blocks(); ++b)
        if (store->spillable(b))
          spill_candidates_.push_back({store == &lc.indexer, store->last_use(b), store, b});
    }
  }
  if (in_ram <= budget) return;
  // Compressed entries go first, least recently read first: indexer keys are scanned in full at
  // every step, while attention reads only the compressed blocks the top-k selects.
  std::sort(spill_candidates_.begin(), spill_candidates_.end(),
            [](const SpillCandidate& a, const SpillCandidate& b) {
              return std::tie(a.keys, a.last_use) < std::tie(b.keys, b.last_use);
            });
  for (const SpillCandidate& c : spill_candidates_) {
    if (in_ram <= budget) break;
    c.store->spill_block(c.block);
    in_ram -= c.store->bytes_per_block();
  }
}

CacheTierStats Session::tier_stats() const {
  CacheTierStats stats;
  for (int64_t l = 0; l < cache_.n_layers(); ++l) {
    const LayerCache& lc = cache_.layer(l);
    for (const EntryStore* store : {&lc.compressed, &lc.indexer}) {
      stats.ram_bytes += store->bytes_in_ram();
      stats.disk_bytes += store->bytes_on_disk();
      stats.block_hits += store->block_hits();
      stats.block_misses += store->block_misses();
    }
  }
  if (spill_) {
    stats.traffic = spill_->traffic();
    stats.file_bytes = spill_->file_bytes();
  }
  return stats;
}

size_t Session::workspace_bytes(const ModelConfig& c, int64_t n_tokens) {
  // The largest set of buffers alive at once (one layer's attention or MoE sub-layer plus the
  // streams), per token, with room for the per-thread key lists and 64-byte rounding.
  const int64_t D = c.hidden_size, n = c.hc_mult, d = c.head_dim;
  const int64_t width = std::max(2 * d, 2 * c.index_head_dim);
  const int64_t streams = n * D + 2 * D + n + n * n;
  const int64_t attention = c.q_lora_rank + 2 * c.num_attention_heads * d + d +
                            c.o_groups * c.o_lora_rank + 2 * width + d +
                            c.index_n_heads * (c.index_head_dim + 1) + 2 * c.index_topk + 2;
  const int64_t moe = 3 * c.n_routed_experts + 4 * c.num_experts_per_tok + 2 * D +
                      4 * c.moe_intermediate_size * std::max<int64_t>(1, c.n_shared_experts) +
                      2 * c.num_experts_per_tok * D;
  const int64_t keys = 8 * (c.sliding_window + c.index_topk) / 4;  // pointers, in floats
  return size_t(n_tokens * (streams + std::max(attention, moe)) + keys) * sizeof(float) +
         (size_t(64) << 10);
}

Result<std::unique_ptr<Session>> Session::create(std::shared_ptr<const Model> model,
                                                 const SessionOptions& options) {
  if (!model) return Status(StatusCode::kInvalidArgument, "Session::create: model is null");
  if (options.max_positions < 0)
    return Status(StatusCode::kInvalidArgument, "max_positions must be >= 0");
  if (options.max_chunk <= 0)
    return Status(StatusCode::kInvalidArgument, "max_chunk must be positive");
  if (options.window_checkpoint_interval < 0)
    return Status(StatusCode::kInvalidArgument, "window_checkpoint_interval must be >= 0");
  if (options.ram_budget < 0)
    return Status(StatusCode::kInvalidArgument, "ram_budget must be >= 0");
  if (options.n_threads < 0) return Status(StatusCode::kInvalidArgument, "n_threads must be >= 0");
  SessionOptions chosen = options;
  if (model->official()) {
    // The official numerics fake-quantise the cache onto the packed grid: an official session
    // stores it packed (f32, the default, means "the model's format"); bf16 would lose the grid.
    if (options.kv_format == KvFormat::kBF16)
      return Status(StatusCode::kInvalidArgument,
                    "the official numerics store the packed cache; kv_format bf16 is refused");
    chosen.kv_format = KvFormat::kPacked;
  }
  return capture_result(
      [&] { return std::unique_ptr<Session>(new Session(std::move(model), chosen)); });
}

Status Session::fill_synthetic_cache(int64_t n_tokens, uint64_t seed) {
  if (position_ != 0)
    return Status(StatusCode::kInvalidArgument, "fill_synthetic_cache needs an empty session");
  if (n_tokens < 0 || (options_.max_positions > 0 && n_tokens > options_.max_positions))
    return Status(StatusCode::kOutOfRange, "fill_synthetic_cache: bad token count");
  const ModelConfig& c = model_->config();
  return capture_status([&] {
    // A pool of random rows reused cyclically: filling 1M positions must not take minutes.
    constexpr int64_t kPool = 1021;
    const int64_t dim = std::max(c.head_dim, c.index_head_dim);
    std::vector<float> pool(size_t(kPool * dim));
    uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& v : pool) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      v = (float(state >> 40) / float(1 << 24) - 0.5f) * 3.4641016f;  // uniform, unit variance
    }
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      LayerCache& lc = cache_.layer(l);
      const int64_t m = c.compress_ratio(l);
      // Only the last W window entries are kept; the ring's logical count still advances to T.
      const int64_t skipped = std::max<int64_t>(0, n_tokens - c.sliding_window);
      lc.window.skip_ring_entries(skipped);
      for (int64_t t = skipped; t < n_tokens; ++t)
        lc.window.append(pool.data() + (t % kPool) * dim);
      if (m <= 0) continue;
      for (int64_t w = 0; w < n_tokens / m; ++w) {
        lc.compressed.append(pool.data() + ((w * 7) % kPool) * dim);
        if (m == kCsaCompressRatio) lc.indexer.append(pool.data() + ((w * 13) % kPool) * dim);
        if (spill_ && w % 4096 == 4095) enforce_ram_budget();  // the budget holds while filling
      }
      lc.compressor.has_prev = lc.indexer_compressor.has_prev = n_tokens >= m;
    }
    tokens_.assign(size_t(n_tokens), 0);  // a synthetic history: ids 0
    position_ = n_tokens;
    first_chunk_ = n_tokens;
    const int64_t interval = options_.window_checkpoint_interval;
    if (interval > 0 && n_tokens % interval == 0) checkpoint_ = capture_window(n_tokens);
    enforce_ram_budget();
  });
}

void Session::reset() {
  cache_.clear();
  tokens_.clear();
  position_ = 0;
  first_chunk_ = 0;
  checkpoint_.reset();
}

std::shared_ptr<const Session::WindowCheckpoint> Session::capture_window(int64_t position) const {
  auto checkpoint = std::make_shared<WindowCheckpoint>();
  checkpoint->position = position;
  for (int64_t l = 0; l < cache_.n_layers(); ++l) {
    const LayerCache& lc = cache_.layer(l);
    checkpoint->rings.push_back(lc.window.fork());
    for (const CompressorState* s : {&lc.compressor, &lc.indexer_compressor}) {
      checkpoint->states.push_back(*s);
      checkpoint->states.back().commit();  // a copy, outside any transaction
    }
  }
  return checkpoint;
}

const Session::WindowCheckpoint* Session::checkpoint_for(int64_t n) const {
  if (!checkpoint_ || checkpoint_->position > n) return nullptr;
  // Worth it only when it leaves fewer tokens to recompute than a rebuild from the ids.
  return checkpoint_->position > rebuild_start(n) ? checkpoint_.get() : nullptr;
}

int64_t Session::rebuild_span() const {
  const ModelConfig& c = model_->config();
  const int64_t W = c.sliding_window;
  int64_t span = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerCache& lc = cache_.layer(l);
    // The positions before n that layer l's state holds: its ring, and its compressors'
    // incomplete window (m − 1 rows at most) plus, overlapping, the previous window.
    int64_t held = W;
    for (const CompressorState* s : {&lc.compressor, &lc.indexer_compressor})
      if (s->compress_ratio > 0)
        held = std::max(held, s->compress_ratio - 1 + (s->overlap ? s->compress_ratio : 0));
    // Recomputing from p makes layer l's input exact from p + l·(W − 1) on: each layer's window
    // reaches W − 1 positions further back into rows the layer below computed without their past.
    span = std::max(span, held + l * (W - 1));
  }
  return span;
}

int64_t Session::rebuild_start(int64_t n) const {
  int64_t from = std::max<int64_t>(0, n - rebuild_span());
  // The official numerics pad the key lists of a first chunk shorter than the window
  // differently from later positions: a rebuild starting inside it starts at 0 instead.
  if (model_->official() && first_chunk_ < model_->config().sliding_window && from < first_chunk_)
    from = 0;
  return from;
}

void Session::rewind_stores(int64_t n, int64_t from) {
  const ModelConfig& c = model_->config();
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerCache& lc = cache_.layer(l);
    const int64_t m = c.compress_ratio(l);
    if (m > 0) lc.compressed.rewind(n / m);
    if (m == kCsaCompressRatio) lc.indexer.rewind(n / m);
    lc.window.rewind(from);
  }
}

void Session::rebuild_window(int64_t from, int64_t n, bool exact_at_from) {
  if (!exact_at_from) {
    // Start the compressors afresh: their rows are rewritten before use, and a first window
    // must not see a stale previous one.
    for (int64_t l = 0; l < cache_.n_layers(); ++l) {
      cache_.layer(l).compressor.clear();
      cache_.layer(l).indexer_compressor.clear();
    }
  }
  if (from >= n) return;
  const ThreadCountScope threads(options_.n_threads > 0 ? options_.n_threads : model_->n_threads());
  workspace_.reserve(workspace_bytes(model_->config(), std::min(options_.max_chunk, n - from)));
  for (int64_t begin = from; begin < n; begin += options_.max_chunk) {
    const int64_t len = std::min(options_.max_chunk, n - begin);
    forward_chunk(tokens_.data() + begin, len, begin, nullptr, len, AppendOptions{}, nullptr);
    enforce_ram_budget();
  }
}

Result<std::unique_ptr<Session>> Session::rebuilt_at(int64_t n) const {
  // The work happens on a copy-on-write fork: this session is never touched.
  auto forked = fork();
  if (!forked) return forked.status();
  std::unique_ptr<Session> copy = std::move(forked.value());
  Status status = capture_status([&] {
    copy->tokens_.resize(size_t(n));
    copy->position_ = n;
    if (const WindowCheckpoint* checkpoint = checkpoint_for(n)) {
      // From the checkpoint: its rings and states are exact at its position.
      copy->rewind_stores(n, 0);
      for (int64_t l = 0; l < copy->cache_.n_layers(); ++l) {
        LayerCache& lc = copy->cache_.layer(l);
        lc.window = checkpoint->rings[size_t(l)].fork();
        lc.compressor = checkpoint->states[size_t(2 * l)];
        lc.indexer_compressor = checkpoint->states[size_t(2 * l + 1)];
      }
      copy->rebuild_window(checkpoint->position, n, true);
    } else {
      const int64_t from = rebuild_start(n);
      copy->rewind_stores(n, from);
      copy->rebuild_window(from, n, false);
    }
    if (copy->checkpoint_ && copy->checkpoint_->position > n) copy->checkpoint_.reset();
  });
  if (!status) return status;
  return copy;
}

Status Session::truncate(int64_t n_tokens) {
  if (n_tokens < 0 || n_tokens > position_)
    return Status(StatusCode::kOutOfRange, "truncate to " + std::to_string(n_tokens) +
                                               " tokens: the session holds " +
                                               std::to_string(position_));
  if (n_tokens == position_) return Status::ok();
  if (n_tokens == 0) {
    reset();
    return Status::ok();
  }
  auto rebuilt = rebuilt_at(n_tokens);
  if (!rebuilt) return rebuilt.status();
  // The rebuild kept the budget as it went (rebuild_window); nothing can fail past this point.
  cache_ = std::move(rebuilt.value()->cache_);
  tokens_ = std::move(rebuilt.value()->tokens_);
  checkpoint_ = std::move(rebuilt.value()->checkpoint_);
  position_ = n_tokens;
  return Status::ok();
}

Status Session::append(std::span<const int32_t> tokens, float* logits, ForwardTrace* trace) {
  return append(tokens, AppendOptions{}, logits, trace);
}

namespace {
void check_abort(const AppendOptions& options) {
  if (options.should_abort && options.should_abort(options.abort_user))
    fail(StatusCode::kCancelled, "append cancelled by the abort callback");
}
}  // namespace

Status Session::append(std::span<const int32_t> tokens, const AppendOptions& options, float* logits,
                       ForwardTrace* trace) {
  const ModelConfig& c = model_->config();
  if (options.output != OutputMode::kNone && options.output != OutputMode::kLast &&
      options.output != OutputMode::kAll)
    return Status(StatusCode::kInvalidArgument,
                  "unknown output mode " + std::to_string(int32_t(options.output)));
  if (options.output == OutputMode::kNone) logits = nullptr;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      return Status(StatusCode::kOutOfRange,
                    "token " + std::to_string(i) + " has id " + std::to_string(tokens[i]) +
                        ", outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  }
  if (options_.max_positions > 0 && position_ + int64_t(tokens.size()) > options_.max_positions)
    return Status(StatusCode::kOutOfRange, "appending " + std::to_string(tokens.size()) +
                                               " tokens at position " + std::to_string(position_) +
                                               " exceeds max_positions " +
                                               std::to_string(options_.max_positions));
  if (tokens.empty()) return Status::ok();
  std::shared_ptr<const WindowCheckpoint> checkpoint;  // taken during this append, if any
  Status status = capture_status([&] {
    if (trace) {
      trace->layer_inputs.assign(
          size_t(c.num_hidden_layers * int64_t(tokens.size()) * c.hc_mult * c.hidden_size), 0.0f);
      trace->final_hidden.assign(tokens.size() * size_t(c.hidden_size), 0.0f);
      trace->decisions.assign(size_t(c.num_hidden_layers), {});
    }
    // Room for the ids now, so that recording them after the commit cannot fail.
    tokens_.reserve(tokens_.size() + tokens.size());
    const ThreadCountScope threads(options_.n_threads > 0 ? options_.n_threads
                                                          : model_->n_threads());
    cache_.begin(position_);
    const int64_t total = int64_t(tokens.size());
    const int64_t interval = options_.window_checkpoint_interval;
    // The first chunk as the official numerics see it: stops at checkpoints change no bit.
    if (position_ == 0) first_chunk_ = std::min(options_.max_chunk, total);
    workspace_.reserve(workspace_bytes(c, std::min(options_.max_chunk, total)));
    for (int64_t begin = 0, n = 0; begin < total; begin += n) {
      check_abort(options);
      const int64_t at = position_ + begin;
      n = std::min(options_.max_chunk, total - begin);
      if (interval > 0) n = std::min(n, interval - at % interval);  // stop at a checkpoint
      // Which rows of this chunk produce logits, and where they go.
      float* chunk_logits = nullptr;
      int64_t first_row = n;
      if (logits && options.output == OutputMode::kAll) {
        chunk_logits = logits + begin * c.vocab_size;
        first_row = 0;
      } else if (logits && begin + n == total) {
        chunk_logits = logits;
        first_row = n - 1;
      }
      ForwardTrace chunk_trace;
      forward_chunk(tokens.data() + begin, n, at, chunk_logits, first_row, options,
                    trace ? &chunk_trace : nullptr);
      enforce_ram_budget();  // also between the chunks of a long prefill
      if (interval > 0 && (at + n) % interval == 0) checkpoint = capture_window(at + n);
      if (trace) {
        const int64_t stream = c.hc_mult * c.hidden_size;
        for (int64_t l = 0; l < c.num_hidden_layers; ++l)
          std::copy_n(chunk_trace.layer_inputs.data() + l * n * stream, n * stream,
                      trace->layer_inputs.data() + (l * total + begin) * stream);
        std::copy_n(chunk_trace.final_hidden.data(), n * c.hidden_size,
                    trace->final_hidden.data() + begin * c.hidden_size);
        for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
          const LayerDecisions& from = chunk_trace.decisions[size_t(l)];
          LayerDecisions& to = trace->decisions[size_t(l)];
          to.indexer.insert(to.indexer.end(), from.indexer.begin(), from.indexer.end());
          to.router.insert(to.router.end(), from.router.begin(), from.router.end());
        }
      }
    }
  });
  if (!status) {
    cache_.rollback();  // the session is exactly as before the call
    if (position_ == 0) first_chunk_ = 0;
    return status;
  }
  cache_.commit();
  if (checkpoint) checkpoint_ = std::move(checkpoint);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  position_ += int64_t(tokens.size());
  return status;
}

void Session::forward_chunk(const int32_t* tokens, int64_t n_tokens, int64_t position,
                            float* logits, int64_t logits_first_row, const AppendOptions& options,
                            ForwardTrace* trace) {
  const Model& model = *model_;
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  const int64_t n = c.hc_mult, D = c.hidden_size, stream = n * D;
  const float eps = float(c.rms_norm_eps);

  if (spill_) spill_->tick();  // one step of the disk tier's least-recently-used clock
  Workspace::Scope scope(workspace_);
  // Every stream starts as the token embedding.
  const auto x = scope.take<float>(size_t(n_tokens * stream));
  throw_if_error(model.backend().embed({w.embed, tokens, n_tokens, n, x.data()}));
  if (model.official()) detail::round_to_bf16(x.data(), n_tokens * stream);  // bf16 embedding
  const Numerics numerics = model.numerics();
  if (trace) {
    trace->layer_inputs.resize(size_t(c.num_hidden_layers * n_tokens * stream));
    trace->decisions.assign(size_t(c.num_hidden_layers), {});
  }

  const auto y = scope.take<float>(size_t(n_tokens * D));
  const auto z = scope.take<float>(size_t(n_tokens * D));
  for (int layer = 0; layer < int(c.num_hidden_layers); ++layer) {
    const LayerWeights& L = w.layers[size_t(layer)];
    check_abort(options);
    if (trace)
      std::copy(x.begin(), x.end(), trace->layer_inputs.begin() + layer * n_tokens * stream);

    {
      Workspace::Scope site(workspace_);
      const MhcCoefficients coef = mhc_pre(model, L.hc_attn, x.data(), n_tokens, y.data(), site);
      detail::rms_norm_rows(model.backend(), y.data(), L.attn_norm.data(), n_tokens, D, eps,
                            numerics);
      detail::attention_forward(model, layer, cache_.layer(layer), y.data(), n_tokens, position,
                                first_chunk_, z.data(), workspace_,
                                trace ? &trace->decisions[size_t(layer)] : nullptr);
      mhc_post(model, coef, z.data(), n_tokens, x.data());
    }
    {
      Workspace::Scope site(workspace_);
      const MhcCoefficients coef = mhc_pre(model, L.hc_ffn, x.data(), n_tokens, y.data(), site);
      detail::rms_norm_rows(model.backend(), y.data(), L.ffn_norm.data(), n_tokens, D, eps,
                            numerics);
      detail::moe_forward(model, layer, y.data(), tokens, n_tokens, z.data(), workspace_,
                          trace ? &trace->decisions[size_t(layer)] : nullptr);
      mhc_post(model, coef, z.data(), n_tokens, x.data());
    }
  }

  // Final head: h = Σ_j pre_j X_j, logits = head · RMSNorm_norm(h).
  MhcHeadArgs head;
  head.x = x.data(), head.n_tokens = n_tokens, head.n = n, head.d = D;
  head.fn = mhc_matrix(w.hc_head.fn, n), head.base = w.hc_head.base.data();
  head.scale = w.hc_head.scale[0], head.hc_eps = float(c.hc_eps), head.norm_eps = eps;
  head.y = y.data(), head.numerics = numerics;
  throw_if_error(model.backend().mhc_head(head));
  detail::rms_norm_rows(model.backend(), y.data(), w.norm.data(), n_tokens, D, eps, numerics);
  if (trace) trace->final_hidden.assign(y.begin(), y.end());
  if (!logits || logits_first_row >= n_tokens) return;
  detail::linear(model.backend(), y.data() + logits_first_row * D, n_tokens - logits_first_row,
                 w.head, logits, detail::fp32_linear_numerics(model));
}

}  // namespace dsv4
