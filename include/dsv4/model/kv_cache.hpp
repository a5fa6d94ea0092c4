// The session's KV cache (spec section 8): per layer, three kinds of entries plus compressor state.
//
//   window       the last W keys (a ring), d values each            (every layer)
//   compressed   one entry per complete window of m tokens, d each  (m > 0)
//   indexer      one lightning-indexer key per compressed entry, c  (CSA)
//   state        the compressor's incomplete window (+ CSA's previous A halves)
//
// Entries live in fixed-size blocks (kBlockEntries each) allocated on demand, each kind with its
// own storage format, so lower-precision formats, per-block accounting and spilling blocks to disk
// fit without changing callers. Today every kind stores fp32 (CacheFormat::kF32).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "dsv4/formats/model_config.hpp"

namespace dsv4 {

enum class CacheKind : uint8_t { kWindow, kCompressed, kIndexer, kCompressorState };
inline constexpr int kNumCacheKinds = 4;
std::string_view cache_kind_name(CacheKind kind) noexcept;

// Storage format of one kind's entries. New formats (FP8 nope + BF16 rope, FP4 e2m1 indexer keys)
// are appended here and implemented in EntryStore's encode/decode.
enum class CacheFormat : uint8_t { kF32 };
size_t cache_format_entry_bytes(CacheFormat format, int64_t entry_dim) noexcept;

// Fixed-size entries in blocks. In ring mode (ring_capacity > 0) logical entry i lives in slot
// i mod ring_capacity and only the last ring_capacity entries are resident.
class EntryStore {
 public:
  static constexpr int64_t kBlockEntries = 64;

  EntryStore() = default;
  EntryStore(CacheFormat format, int64_t entry_dim, int64_t ring_capacity = 0);

  // Appends one entry (entry_dim fp32 values); returns its logical index.
  int64_t append(const float* values);
  // The fp32 values of logical entry i (must be resident). Pointers stay valid as the store grows.
  // In a non-ring store the entries of one block (i / kBlockEntries) are contiguous, so a block can
  // be handed to a GEMM as one [kBlockEntries, entry_dim] matrix.
  const float* entry(int64_t i) const;

  int64_t size() const noexcept { return size_; }  // entries ever appended
  int64_t resident() const noexcept;               // entries held now
  int64_t entry_dim() const noexcept { return entry_dim_; }
  CacheFormat format() const noexcept { return format_; }
  size_t bytes_used() const noexcept;      // resident entries × bytes per entry
  size_t bytes_reserved() const noexcept;  // allocated blocks
  void clear();

 private:
  float* slot(int64_t slot_index) const;
  CacheFormat format_ = CacheFormat::kF32;
  int64_t entry_dim_ = 0;
  int64_t ring_capacity_ = 0;
  int64_t size_ = 0;
  std::vector<std::unique_ptr<float[]>> blocks_;
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
  void clear();
};

struct LayerCache {
  EntryStore window;
  EntryStore compressed;               // m > 0
  EntryStore indexer;                  // CSA
  CompressorState compressor;          // m > 0
  CompressorState indexer_compressor;  // CSA
};

struct CacheMemory {
  // bytes_used[layer][kind]
  std::vector<std::array<size_t, kNumCacheKinds>> bytes_used;
  std::vector<std::array<size_t, kNumCacheKinds>> bytes_reserved;
  size_t total_used(CacheKind kind) const;
  size_t total_used() const;
  size_t total_reserved() const;
};

class KvCache {
 public:
  explicit KvCache(const ModelConfig& config);
  LayerCache& layer(int64_t i) { return layers_[size_t(i)]; }
  const LayerCache& layer(int64_t i) const { return layers_[size_t(i)]; }
  int64_t n_layers() const noexcept { return int64_t(layers_.size()); }
  CacheMemory memory() const;
  void clear();

 private:
  std::vector<LayerCache> layers_;
};

}  // namespace dsv4
