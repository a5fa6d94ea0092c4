// A session: one sequence's KV cache and position over a shared Model. Tokens are appended in
// chunks of any size (a prompt at once, in pieces, or one at a time for decode); every way of
// feeding the same tokens gives the same logits. One thread at a time per session.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/model/kv_cache.hpp"
#include "dsv4/model/model.hpp"
#include "dsv4/model/workspace.hpp"

namespace dsv4 {

struct SessionOptions {
  int64_t max_positions = 0;  // 0 = unlimited
  int64_t max_chunk = 1024;   // tokens per internal forward step (bounds activation memory)
  int n_threads = 0;          // threads for this session's appends; 0 = the model's
  // How the KV cache stores its entries: f32 (exact), bf16, or packed (e4m3 nope + bf16 rope,
  // 584 bytes per V4 entry, and FP4 indexer keys, 68 bytes: the official layout).
  KvFormat kv_format = KvFormat::kF32;
};

// How a saved session keeps its sliding-window entries (the V4 paper's strategies). kFull: every
// layer's ring is stored, and a restore is a plain read.
enum class SwaStrategy : int32_t { kFull = 0 };

struct SaveOptions {
  SwaStrategy swa_strategy = SwaStrategy::kFull;
};

// Which logits an append writes.
enum class OutputMode : int32_t {
  kNone = 0,  // none (prefill whose logits nobody reads: the head is skipped)
  kLast = 1,  // the last appended position only: one row of vocab floats
  kAll = 2,   // every appended position: n_tokens rows
};

struct AppendOptions {
  OutputMode output = OutputMode::kAll;
  // Asked between chunks and between layers; returning true cancels the append (kCancelled), and
  // the session is left exactly as before it.
  bool (*should_abort)(void* user) = nullptr;
  void* abort_user = nullptr;
};

// Optional record of intermediate values, for tests and debugging.
// The discrete decisions of one layer over T tokens (−1 = none). The indexer's selections come in
// the order the numerics produce them: ascending index (exact) or the official list order
// (descending score, lower index first among equals); the router's in selection order (hash
// layers: the tid2eid row).
struct LayerDecisions {
  std::vector<int32_t> indexer;  // [T, index_topk] (CSA layers; empty elsewhere)
  std::vector<int32_t> router;   // [T, num_experts_per_tok]
};

struct ForwardTrace {
  std::vector<float> layer_inputs;  // [n_layers, T, hc_mult, D]: the streams entering each layer
  std::vector<float> final_hidden;  // [T, D]: RMSNorm_norm(Σ_j pre_j X_j), the input of the head
  std::vector<LayerDecisions> decisions;  // [n_layers]
};

class Session {
 public:
  static Result<std::unique_ptr<Session>> create(std::shared_ptr<const Model> model,
                                                 const SessionOptions& options = {});

  // Appends tokens and, when `logits` is not null, writes [tokens.size(), vocab] logits.
  // Appends are transactional: whatever fails (bad token ids, limits, out of memory, a
  // cancellation), the session is left exactly as before the call: position, cache and
  // compressor state.
  Status append(std::span<const int32_t> tokens, float* logits, ForwardTrace* trace = nullptr);
  // The same with output selection and cancellation. With OutputMode::kLast, `logits` receives
  // one row; with kNone it may be null.
  Status append(std::span<const int32_t> tokens, const AppendOptions& options, float* logits,
                ForwardTrace* trace = nullptr);

  // For benchmarks at contexts whose prefill would take hours: fills an empty session's cache as
  // if `n_tokens` tokens had been appended, with random unit-RMS entries (window ring, compressed
  // entries, indexer keys; compressor states zero). Decode then reads exactly the bytes and does
  // exactly the work of a real session at that context; its logits mean nothing.
  Status fill_synthetic_cache(int64_t n_tokens, uint64_t seed);

  // Writes the session (tokens, cache, compressor state) to `path` atomically: a temporary file
  // next to it, fsync, rename; on any failure (disk full included) the previous file at `path`
  // is untouched. The format is versioned and checksummed (docs/architecture.md).
  Status save(const std::string& path, const SaveOptions& options = {}) const;
  // A session restored from a file written by save() for this model (same config, weights
  // fingerprint and numerics; kModelMismatch otherwise, kCorruptFile for a damaged or truncated
  // file, kUnsupported for a newer format version). The cache keeps the file's storage format;
  // the other options apply as in create(). Appending to it gives the logits the saved session
  // would have given.
  static Result<std::unique_ptr<Session>> load(std::shared_ptr<const Model> model,
                                               const std::string& path,
                                               const SessionOptions& options = {});
  // An independent copy of this session (cache, compressor state, tokens, position): several
  // continuations of one prompt. The cache blocks are shared copy-on-write, so a fork costs a
  // block table, not a second cache; each side copies a block the first time it writes to it
  // (the last, partly filled block of each store, and the window ring).
  Result<std::unique_ptr<Session>> fork() const;

  int64_t position() const noexcept { return position_; }
  // The token ids appended so far (position() of them).
  const std::vector<int32_t>& tokens() const noexcept { return tokens_; }
  const Model& model() const noexcept { return *model_; }
  CacheMemory memory() const { return cache_.memory(); }
  const KvCache& cache() const noexcept { return cache_; }
  // The cache's storage format (an official model's sessions store packed).
  KvFormat kv_format() const noexcept { return options_.kv_format; }
  // The forward pass's working memory: bytes held, and the most used at once so far.
  size_t workspace_capacity() const noexcept { return workspace_.capacity(); }
  size_t workspace_high_water() const noexcept { return workspace_.high_water(); }
  void reset();

 private:
  Session(std::shared_ptr<const Model> model, const SessionOptions& options);
  // Runs one chunk at positions [position, position + n_tokens). `logits_first_row` is the first
  // row of the chunk whose logits go to `logits` (n_tokens = none).
  void forward_chunk(const int32_t* tokens, int64_t n_tokens, int64_t position, float* logits,
                     int64_t logits_first_row, const AppendOptions& options, ForwardTrace* trace);

  // An upper estimate of the workspace a chunk of n_tokens needs (it grows if ever short).
  static size_t workspace_bytes(const ModelConfig& config, int64_t n_tokens);

  std::shared_ptr<const Model> model_;
  SessionOptions options_;
  KvCache cache_;
  std::vector<int32_t> tokens_;
  Workspace workspace_;
  int64_t position_ = 0;
};

// Fault injection for tests: the next session save fails with an I/O error (ENOSPC) after
// writing `bytes` more bytes (< 0 disables, the default).
void set_session_write_failure_after(int64_t bytes) noexcept;

}  // namespace dsv4
