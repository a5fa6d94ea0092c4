// Session: a sequence's bookkeeping around the forward pass (forward_pass.cpp): transactions,
// positions, chunking, checkpoints, the disk tier's budget, truncation and batched decode.
#include "dsv4/model/session.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <tuple>

#include "layer_forward.hpp"

namespace dsv4 {
namespace {

// kInvalidArgument for an OutputMode value outside the enum (it comes through the C ABI as int).
Status check_output_mode(OutputMode mode) {
  if (mode == OutputMode::kNone || mode == OutputMode::kLast || mode == OutputMode::kAll)
    return Status::ok();
  return Status(StatusCode::kInvalidArgument,
                "unknown output mode " + std::to_string(int32_t(mode)));
}

// Room for `more` token ids, grown geometrically: an exact reserve would reallocate, and copy
// the whole history, on every decode step.
void reserve_more(std::vector<int32_t>& ids, size_t more) {
  if (ids.capacity() < ids.size() + more)
    ids.reserve(std::max(ids.size() + more, 2 * ids.capacity()));
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
  // The largest set of buffers alive at once: the streams and one layer's attention (per token),
  // or the streams and its MoE sub-layer (as moe_forward counts it), with room for the
  // per-thread key lists and 64-byte rounding.
  const int64_t D = c.hidden_size, n = c.hc_mult, d = c.head_dim;
  const int64_t width = std::max(2 * d, 2 * c.index_head_dim);
  const int64_t streams = n * D + 2 * D + n + n * n;
  const int64_t attention = c.q_lora_rank + 2 * c.num_attention_heads * d + d +
                            c.o_groups * c.o_lora_rank + 2 * width + d +
                            c.index_n_heads * (c.index_head_dim + 1) + 2 * c.index_topk + 2;
  const auto moe = int64_t(detail::moe_workspace_floats(c, n_tokens));
  const int64_t keys = 8 * (c.sliding_window + c.index_topk) / 4;  // pointers, in floats
  return size_t(n_tokens * streams + std::max(n_tokens * attention, moe) + keys) * sizeof(float) +
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
  const ThreadCountScope threads(thread_count());
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

Status Session::append(std::span<const int32_t> tokens, const AppendOptions& options, float* logits,
                       ForwardTrace* trace) {
  const ModelConfig& c = model_->config();
  if (Status s = check_output_mode(options.output); !s) return s;
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
    reserve_more(tokens_, tokens.size());
    const ThreadCountScope threads(thread_count());
    cache_.begin(position_);
    const int64_t total = int64_t(tokens.size());
    const int64_t interval = options_.window_checkpoint_interval;
    // The first chunk as the official numerics see it: stops at checkpoints change no bit.
    if (position_ == 0) first_chunk_ = std::min(options_.max_chunk, total);
    workspace_.reserve(workspace_bytes(c, std::min(options_.max_chunk, total)));
    for (int64_t begin = 0, n = 0; begin < total; begin += n) {
      detail::check_abort(options);
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
  if (spill_) spill_->tick();  // one step of the disk tier's least-recently-used clock
  const detail::SequenceRows rows{&cache_, position, n_tokens, 0, first_chunk_};
  detail::forward_pass(*model_, {&rows, 1}, tokens, n_tokens, logits, logits_first_row, options,
                       trace, workspace_);
}

Status Session::check_batch(std::span<Session* const> sessions, std::span<const int32_t> tokens) {
  if (sessions.empty()) return Status(StatusCode::kInvalidArgument, "decode_batch: no sessions");
  if (tokens.size() != sessions.size())
    return Status(StatusCode::kInvalidArgument, "decode_batch: " + std::to_string(tokens.size()) +
                                                    " tokens for " +
                                                    std::to_string(sessions.size()) + " sessions");
  for (size_t i = 0; i < sessions.size(); ++i) {
    const Session* s = sessions[i];
    const std::string which = "decode_batch: session " + std::to_string(i);
    if (!s) return Status(StatusCode::kInvalidArgument, which + " is null");
    if (s->model_ != sessions[0]->model_)
      return Status(StatusCode::kInvalidArgument, which + " belongs to another model");
    if (std::find(sessions.begin(), sessions.begin() + ptrdiff_t(i), s) !=
        sessions.begin() + ptrdiff_t(i))
      return Status(StatusCode::kInvalidArgument, which + " appears twice");
    if (tokens[i] < 0 || tokens[i] >= s->model_->config().vocab_size)
      return Status(StatusCode::kOutOfRange, which + ": token id " + std::to_string(tokens[i]) +
                                                 " is outside the vocabulary [0, " +
                                                 std::to_string(s->model_->config().vocab_size) +
                                                 ")");
    if (s->options_.max_positions > 0 && s->position_ + 1 > s->options_.max_positions)
      return Status(StatusCode::kOutOfRange,
                    which + " is full: max_positions " + std::to_string(s->options_.max_positions));
  }
  return Status::ok();
}

Status Session::decode_batch(std::span<Session* const> sessions, std::span<const int32_t> tokens,
                             const AppendOptions& options, float* logits) {
  if (Status s = check_batch(sessions, tokens); !s) return s;
  if (Status s = check_output_mode(options.output); !s) return s;
  if (options.output == OutputMode::kNone) logits = nullptr;
  Session& lead = *sessions[0];  // its thread count and workspace serve the batch
  const auto n_rows = int64_t(sessions.size());
  std::vector<std::shared_ptr<const WindowCheckpoint>> checkpoints(sessions.size());
  std::vector<detail::SequenceRows> rows(sessions.size());
  Status status = capture_status([&] {
    const ThreadCountScope threads(lead.thread_count());
    lead.workspace_.reserve(workspace_bytes(lead.model_->config(), n_rows));
    for (int64_t i = 0; i < n_rows; ++i) {
      Session& s = *sessions[size_t(i)];
      reserve_more(s.tokens_, 1);  // recording the id after the commit cannot fail
      s.cache_.begin(s.position_);
      if (s.position_ == 0) s.first_chunk_ = 1;
      if (s.spill_) s.spill_->tick();
      rows[size_t(i)] = {&s.cache_, s.position_, 1, i, s.first_chunk_};
    }
    detail::forward_pass(*lead.model_, rows, tokens.data(), n_rows, logits, 0, options, nullptr,
                         lead.workspace_);
    for (size_t i = 0; i < sessions.size(); ++i) {
      Session& s = *sessions[i];
      s.enforce_ram_budget();
      const int64_t interval = s.options_.window_checkpoint_interval;
      if (interval > 0 && (s.position_ + 1) % interval == 0)
        checkpoints[i] = s.capture_window(s.position_ + 1);
    }
  });
  for (size_t i = 0; i < sessions.size(); ++i) {
    Session& s = *sessions[i];
    if (!status) {
      s.cache_.rollback();  // every session exactly as before the call
      if (s.position_ == 0) s.first_chunk_ = 0;
      continue;
    }
    s.cache_.commit();
    if (checkpoints[i]) s.checkpoint_ = std::move(checkpoints[i]);
    s.tokens_.push_back(tokens[i]);
    ++s.position_;
  }
  return status;
}

}  // namespace dsv4
