// The session's KV cache (spec section 8): per layer, three kinds of entries plus compressor state.
//
//   window       the last W keys (a ring), d values each            (every layer)
//   compressed   one entry per complete window of m tokens, d each  (m > 0)
//   indexer      one lightning-indexer key per compressed entry, c  (CSA)
//   state        the compressor's incomplete window (+ CSA's previous A halves)
//
// Entries live in fixed-size blocks (kBlockEntries each) allocated on demand, each kind with its
// own storage format (core/kv_codec.hpp), chosen per session by KvFormat: f32, bf16, or packed
// (e4m3 nope + bf16 rope for window and compressed entries, Hadamard-rotated e2m1 for indexer
// keys, as the official inference code quantises them). Readers get the stored bytes and the codec.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "dsv4/core/kv_codec.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/model/spill_file.hpp"

namespace dsv4 {

enum class CacheKind : uint8_t { kWindow, kCompressed, kIndexer, kCompressorState };
inline constexpr int kNumCacheKinds = 4;
std::string_view cache_kind_name(CacheKind kind) noexcept;

// The storage chosen for a session's cache (values pinned: the C ABI's DSV4_KV_*).
enum class KvFormat : int32_t { kF32 = 0, kBF16 = 1, kPacked = 2 };
std::string_view kv_format_name(KvFormat format) noexcept;
bool parse_kv_format(std::string_view name, KvFormat* out) noexcept;
// The codec of each kind of entry for a format: window and compressed entries (head_dim, the
// last qk_rope_head_dim being rope) and indexer keys (index_head_dim).
EntryCodec main_entry_codec(const ModelConfig& config, KvFormat format) noexcept;
EntryCodec indexer_entry_codec(const ModelConfig& config, KvFormat format) noexcept;

// Fixed-size entries in blocks. In ring mode (ring_capacity > 0) logical entry i lives in slot
// i mod ring_capacity and only the last ring_capacity entries are resident.
class EntryStore {
 public:
  static constexpr int64_t kBlockEntries = 64;  // the default block size

  EntryStore() = default;
  EntryStore(EntryCodec codec, int64_t ring_capacity = 0, int64_t block_entries = kBlockEntries);
  // Moves only: a copy would share blocks without copy-on-write (fork() is the sharing copy).
  EntryStore(EntryStore&&) noexcept = default;
  EntryStore& operator=(EntryStore&&) noexcept = default;
  EntryStore(const EntryStore&) = delete;
  EntryStore& operator=(const EntryStore&) = delete;
  int64_t block_entries() const noexcept { return block_entries_; }
  bool is_ring() const noexcept { return ring_capacity_ > 0; }
  size_t bytes_per_block() const noexcept { return size_t(block_entries_) * entry_bytes_; }

  // Appends one entry (entry_dim fp32 values, encoded in the store's format); returns its
  // logical index.
  int64_t append(const float* values);
  // The same for an entry already in the store's format (codec().bytes() bytes).
  int64_t append_encoded(const uint8_t* entry);
  // The stored bytes of logical entry i (must be resident); codec() reads them. Pointers stay
  // valid as the store grows. In a non-ring store the entries of one block (i / kBlockEntries)
  // are contiguous, so a block can be handed to a kernel as one [kBlockEntries] array of entries.
  const uint8_t* entry(int64_t i) const;
  // Block b of a non-ring store: entries [b·block_entries, (b+1)·block_entries), contiguous.
  const uint8_t* block(int64_t b) const { return blocks_[size_t(b)].get(); }
  const EntryCodec& codec() const noexcept { return codec_; }
  int64_t n_blocks() const noexcept { return int64_t(blocks_.size()); }
  // Ring stores only: advances the logical count by n without writing (the skipped slots read as
  // zeros until written). Used by synthetic cache fills and window rebuilds.
  void skip_ring_entries(int64_t n);
  // Back to `n` logical entries (n <= size(), outside appends): a store drops entries [n, size)
  // and the blocks they alone used; a ring only moves its count, and its slots keep whatever they
  // held (the caller rewrites the last ring_capacity entries: Session::truncate recomputes them).
  void rewind(int64_t n);

  // ---- the disk tier (non-ring stores) ----
  // Full blocks can move to `file` (spill_block) and come back when read (ensure_resident).
  // Readers must make the blocks they will read resident first: entry() and block() of a spilled
  // block are an internal error. Residency is a cache of the same bytes, hence const.
  // `lossy_cold`: spilled blocks are stored smaller and lossily (cold_entry_bytes()): the nope
  // dims as e2m1 with a power-of-two scale per 16, the rope dims as bf16; a block read back holds
  // those values re-encoded in the store's format. Opt-in (SessionOptions::lossy_cold_entries).
  void attach_spill_file(std::shared_ptr<SpillFile> file, bool lossy_cold = false);
  size_t cold_entry_bytes() const noexcept;
  bool has_disk_tier() const noexcept { return spill_ != nullptr; }
  // Blocks [first, end), or the listed ones, resident: spilled ones are read back (in parallel),
  // and all are stamped as used now.
  void ensure_resident(int64_t first, int64_t end) const;
  void ensure_resident(const std::vector<int64_t>& blocks) const;
  // Moves full block b out of RAM, writing it to the spill file unless an unchanged copy is there.
  void spill_block(int64_t b);
  bool spillable(int64_t b) const noexcept;  // resident and full
  // Block b's bytes without changing residency: the block itself, or a copy read into `scratch`.
  const uint8_t* block_bytes(int64_t b, std::vector<uint8_t>& scratch) const;
  uint64_t last_use(int64_t b) const noexcept { return last_use_[size_t(b)]; }
  size_t bytes_in_ram() const noexcept;   // the entries of resident blocks
  size_t bytes_on_disk() const noexcept;  // the entries of spilled blocks (uncompressed)
  uint64_t block_hits() const noexcept { return hits_; }      // reads of resident blocks
  uint64_t block_misses() const noexcept { return misses_; }  // reads from the spill file

  // A copy that shares this store's blocks (copy-on-write): both stores read the same bytes, and
  // whichever writes to a shared block first gets its own copy of that block. During an append
  // the copy holds the entries written so far (and none of the transaction's journal).
  EntryStore fork() const;
  size_t bytes_shared() const noexcept;  // blocks still shared with a fork (or its origin)

  int64_t size() const noexcept { return size_; }  // entries ever appended
  int64_t resident() const noexcept;               // entries held now
  int64_t entry_dim() const noexcept { return codec_.dim; }
  CacheFormat format() const noexcept { return codec_.format; }
  size_t bytes_used() const noexcept;      // resident entries × bytes per entry
  size_t bytes_reserved() const noexcept;  // allocated blocks
  void clear();

  // Transactions: after begin(), rollback() restores the store exactly as it was (entries appended
  // since are dropped, ring slots they overwrote are put back); commit() keeps the changes. Only
  // overwritten ring slots are copied, so a decode step journals one entry per ring store.
  void begin();
  void commit() noexcept;
  void rollback() noexcept;

 private:
  uint8_t* next_slot();  // the slot the next entry goes to (allocating, journalling)
  uint8_t* slot(int64_t slot_index) const;
  void resize_blocks(size_t n);  // blocks_ and every per-block vector
  void load_block(int64_t b) const;
  // Reads spilled block b into `out` in the store's format (undoing the lossy cold encoding).
  void read_spilled(int64_t b, uint8_t* out) const;
  EntryCodec codec_;
  size_t entry_bytes_ = 0;
  int64_t block_entries_ = kBlockEntries;
  int64_t ring_capacity_ = 0;
  int64_t size_ = 0;
  // A null block is on the spill file (extents_[b]); mutable: residency is a cache.
  mutable std::vector<std::shared_ptr<uint8_t[]>> blocks_;
  std::shared_ptr<SpillFile> spill_;
  bool lossy_cold_ = false;
  std::vector<SpillFile::Extent> extents_;
  std::vector<uint8_t> on_file_;  // 1: extents_[b] holds the block's current bytes
  mutable std::vector<uint64_t> last_use_;
  mutable uint64_t hits_ = 0, misses_ = 0;
  // Per block: 1 while it may be shared with a fork (copied before the first write). Mutable:
  // forking marks the origin's blocks too. Both sides copy, so no block is ever written while
  // another store can read it.
  mutable std::vector<uint8_t> shared_;
  // Transaction journal: the size at begin() and the ring slots overwritten since, with their
  // previous values (capacity is kept between transactions: no allocation per decode step).
  bool in_transaction_ = false;
  int64_t begin_size_ = 0;
  std::vector<int64_t> journal_slots_;
  std::vector<uint8_t> journal_values_;
};

// The incomplete window of a compressor: kv and gate rows (gate includes the ape row) of the tokens
// seen so far, and for the overlapping (CSA) variant the previous window's A halves.
struct CompressorState {
  int64_t compress_ratio = 0;  // m
  int64_t width = 0;           // row width (out_dim, or 2·out_dim when overlapping)
  bool overlap = false;
  std::vector<float> kv, gate;                // [m, width]
  std::vector<float> prev_kv_a, prev_gate_a;  // [m, width/2] (overlap only)
  bool has_prev = false;

  CompressorState() = default;
  CompressorState(int64_t m, int64_t width, bool overlap);
  size_t bytes() const noexcept;
  // bytes() of a state of this shape, without making one (the memory planner).
  static size_t bytes_for(int64_t m, int64_t width, bool overlap) noexcept;
  // The row widths KvCache gives the compressors of a layer with ratio m (CSA overlaps: two
  // halves per row), and of the CSA indexer's compressor.
  static int64_t main_width(const ModelConfig& config, int64_t m) noexcept;
  static int64_t indexer_width(const ModelConfig& config) noexcept;
  void clear();

  // Transactions, as EntryStore's. `position` is the number of tokens fed so far: rows of the
  // incomplete window ([0, position mod m)) are live and get journalled before being overwritten.
  void begin(int64_t position);
  void commit() noexcept;
  void rollback() noexcept;
  // Writers call these before overwriting kv/gate row `slot`, or the previous A halves.
  void journal_row(int64_t slot);
  void journal_prev();

 private:
  bool in_transaction_ = false;
  int64_t live_rows_ = 0;
  bool saved_has_prev_ = false, prev_saved_ = false;
  std::vector<uint8_t> row_saved_;  // [m]
  std::vector<float> saved_kv_, saved_gate_, saved_prev_kv_a_, saved_prev_gate_a_;
};

struct LayerCache {
  EntryStore window;
  EntryStore compressed;               // m > 0
  EntryStore indexer;                  // CSA
  CompressorState compressor;          // m > 0
  CompressorState indexer_compressor;  // CSA
};

struct CacheMemory {
  // bytes_used[layer][kind]: the entries held, in RAM or on the disk tier
  std::vector<std::array<size_t, kNumCacheKinds>> bytes_used;
  std::vector<std::array<size_t, kNumCacheKinds>> bytes_reserved;
  std::vector<std::array<size_t, kNumCacheKinds>> bytes_on_disk;  // of bytes_used
  size_t total_used(CacheKind kind) const;
  size_t total_used() const;
  size_t total_on_disk() const;
  size_t total_reserved() const;
};

class KvCache {
 public:
  explicit KvCache(const ModelConfig& config, KvFormat format = KvFormat::kF32);
  KvFormat format() const noexcept { return format_; }
  LayerCache& layer(int64_t i) { return layers_[size_t(i)]; }
  const LayerCache& layer(int64_t i) const { return layers_[size_t(i)]; }
  int64_t n_layers() const noexcept { return int64_t(layers_.size()); }
  CacheMemory memory() const;
  void clear();

  // A transaction over every layer (see EntryStore::begin): an append that fails or is cancelled
  // rolls the whole cache back to the state of begin(position).
  void begin(int64_t position);
  void commit() noexcept;
  void rollback() noexcept;

 private:
  std::vector<LayerCache> layers_;
  KvFormat format_ = KvFormat::kF32;
};

// Fault injection for tests: after `n` more cache block allocations (any thread), the next one
// throws std::bad_alloc (n < 0 disables, the default). Lets tests prove that a failed append
// leaves the session unchanged.
void set_cache_allocation_failure_countdown(int64_t n) noexcept;

}  // namespace dsv4
