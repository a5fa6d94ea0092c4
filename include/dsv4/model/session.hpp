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
  // Keep the window rings and compressor states as of the latest multiple of this many tokens
  // (0: none). Appends stop their internal chunks there (which changes no bit). A save with
  // SwaStrategy::kCheckpoint at this interval then writes them as they are, and a truncate to a
  // position at or after the checkpoint recomputes only the tokens since. Costs one more ring and
  // compressor state (shared copy-on-write with the live ones until they move on).
  int64_t window_checkpoint_interval = 0;
  // The disk tier: at most this many bytes of compressed entries and indexer keys stay in RAM
  // (0: no limit). Colder full blocks (least recently read first) go to an unnamed scratch file
  // in spill_dir (empty: the system temp directory), zstd-compressed with a CRC-32C each, and are
  // read back when a step needs them: the indexer's top-k names the compressed blocks attention
  // will read, and they are loaded (in parallel) before it. Lossless: the logits are the same.
  int64_t ram_budget = 0;
  std::string spill_dir;
  // Opt-in, lossy: compressed entries spilled to the disk tier are stored as e2m1 nope values
  // with a power-of-two scale per 16 and bf16 rope values (380 bytes for V4 instead of the
  // packed 584), and come back with those values. Indexer keys are never stored lossily.
  bool lossy_cold_entries = false;
};

// The disk tier's figures (Session::tier_stats).
struct CacheTierStats {
  size_t ram_bytes = 0, disk_bytes = 0;  // compressed entries and indexer keys, by where they are
  uint64_t block_hits = 0, block_misses = 0;  // block reads served from RAM / from the file
  SpillFile::Traffic traffic;                 // blocks and bytes written and read back
  uint64_t file_bytes = 0;                    // the scratch file's length
};

// How a saved session keeps its sliding-window entries (the V4 paper's strategies; values pinned:
// the C ABI's DSV4_SWA_*). Compressed entries, indexer keys and token ids are always stored; every
// strategy restores to the same bits.
enum class SwaStrategy : int32_t {
  kFull = 0,        // every layer's ring and compressor state: a restore is a plain read
  kCheckpoint = 1,  // the rings and states as of the last multiple of checkpoint_interval: a
                    // restore recomputes the tokens since (fewer than the interval)
  kNone = 2,        // no ring or state: a restore recomputes the last Session::rebuild_span()
                    // tokens from their ids
};

struct SaveOptions {
  SwaStrategy swa_strategy = SwaStrategy::kFull;
  int64_t checkpoint_interval = 0;  // kCheckpoint: tokens between checkpoints (> 0)
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

  // One decode step of several sessions at once (continuous batching): appends tokens[i] to
  // sessions[i] and, unless options.output is kNone, writes its logits to row i of `logits`
  // [sessions, vocab]. The weights are read once for the whole batch, and each session gets
  // exactly the bits a one-token append would have given it (the kernels are row-invariant).
  // The sessions must be distinct and share one model; they may differ in position and cache
  // format. The lead session's (sessions[0]) thread count and workspace serve the step. All or
  // nothing: on any failure (bad ids, a full session, out of memory, a cancellation) every
  // session is left exactly as before the call.
  static Status decode_batch(std::span<Session* const> sessions, std::span<const int32_t> tokens,
                             const AppendOptions& options, float* logits);

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
  // Rewinds to the first n_tokens tokens (0 <= n_tokens <= position()), for speculative decoding
  // and chat edits: later compressed entries and indexer keys are dropped, and the window rings and
  // compressor states are rebuilt for position n_tokens by recomputing the tokens they depend on
  // (at most rebuild_span() of them). The session then continues exactly, bit for bit, as one
  // that stopped at n_tokens. On failure (out of memory) it is unchanged.
  Status truncate(int64_t n_tokens);
  // How many tokens before a position a rebuild of the window rings and compressor states
  // recomputes: layer l's ring depends on the tokens back to W + l·(W − 1) before it (its window,
  // and the windows below it), and its compressors on their incomplete and previous windows.
  int64_t rebuild_span() const;

  int64_t position() const noexcept { return position_; }
  // The token ids appended so far (position() of them).
  const std::vector<int32_t>& tokens() const noexcept { return tokens_; }
  const Model& model() const noexcept { return *model_; }
  CacheMemory memory() const { return cache_.memory(); }
  const KvCache& cache() const noexcept { return cache_; }
  CacheTierStats tier_stats() const;
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

  // The threads this session's appends use (its own count, or the model's).
  int thread_count() const noexcept {
    return options_.n_threads > 0 ? options_.n_threads : model_->n_threads();
  }
  // decode_batch's argument checks.
  static Status check_batch(std::span<Session* const> sessions, std::span<const int32_t> tokens);
  // Where a rebuild of the window for position n starts (see rebuild_span; the official numerics
  // also start at 0 rather than inside a first chunk shorter than the window).
  int64_t rebuild_start(int64_t n) const;
  // Rebuilds the window rings and compressor states for position n by recomputing tokens
  // [from, n): the compressed stores must hold exactly the entries of positions < n and tokens_
  // at least n ids; the rings and states are either exact at `from` (a checkpoint) or, with
  // from = rebuild_start(n), anything finite. No transaction: callers work on a fork or on a
  // session being loaded.
  void rebuild_window(int64_t from, int64_t n, bool exact_at_from);
  // Drops the entries of positions >= n from the compressed stores and rewinds the rings to `from`.
  void rewind_stores(int64_t n, int64_t from);
  // Moves the least recently read full blocks to the spill file until the RAM budget holds.
  void enforce_ram_budget();
  // A fork of this session truncated to n tokens (rings and states rebuilt).
  Result<std::unique_ptr<Session>> rebuilt_at(int64_t n) const;

  // An upper estimate of the workspace a chunk of n_tokens needs (it grows if ever short).
  static size_t workspace_bytes(const ModelConfig& config, int64_t n_tokens);

  // The window rings and compressor states of every layer as of `position`.
  struct WindowCheckpoint {
    int64_t position = 0;
    std::vector<EntryStore> rings;        // [layer]
    std::vector<CompressorState> states;  // [layer × 2]: main, indexer
  };
  std::shared_ptr<const WindowCheckpoint> capture_window(int64_t position) const;
  // The latest checkpoint at or before n worth starting a rebuild from (null: none).
  const WindowCheckpoint* checkpoint_for(int64_t n) const;

  std::shared_ptr<const Model> model_;
  SessionOptions options_;
  KvCache cache_;
  std::vector<int32_t> tokens_;
  Workspace workspace_;
  int64_t position_ = 0;
  // The length of the first chunk forwarded from position 0 (0: none yet). The official numerics
  // pad that chunk's key lists differently (official_window_slots), so rebuilds need it.
  int64_t first_chunk_ = 0;
  // The latest window checkpoint (options_.window_checkpoint_interval), shared by forks.
  std::shared_ptr<const WindowCheckpoint> checkpoint_;
  std::shared_ptr<SpillFile> spill_;  // the disk tier (options_.ram_budget > 0), shared by forks
  struct SpillCandidate {
    bool keys;  // an indexer-key block (spilled after the compressed entries)
    uint64_t last_use;
    EntryStore* store;
    int64_t block;
  };
  std::vector<SpillCandidate> spill_candidates_;  // enforce_ram_budget's scratch
};

// Fault injection for tests: the next session save fails with an I/O error (ENOSPC) after
// writing `bytes` more bytes (< 0 disables, the default).
void set_session_write_failure_after(int64_t bytes) noexcept;

}  // namespace dsv4
