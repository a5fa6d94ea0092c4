#include "dsv4/model/kv_cache.hpp"

#include <algorithm>
#include <cstring>

namespace dsv4 {

std::string_view cache_kind_name(CacheKind kind) noexcept {
  switch (kind) {
    case CacheKind::kWindow:
      return "window";
    case CacheKind::kCompressed:
      return "compressed";
    case CacheKind::kIndexer:
      return "indexer";
    case CacheKind::kCompressorState:
      return "state";
  }
  return "?";
}

size_t cache_format_entry_bytes(CacheFormat format, int64_t entry_dim) noexcept {
  switch (format) {
    case CacheFormat::kF32:
      return size_t(entry_dim) * sizeof(float);
  }
  return 0;
}

EntryStore::EntryStore(CacheFormat format, int64_t entry_dim, int64_t ring_capacity)
    : format_(format), entry_dim_(entry_dim), ring_capacity_(ring_capacity) {}

float* EntryStore::slot(int64_t slot_index) const {
  return blocks_[size_t(slot_index / kBlockEntries)].get() +
         (slot_index % kBlockEntries) * entry_dim_;
}

int64_t EntryStore::append(const float* values) {
  const int64_t slot_index = ring_capacity_ > 0 ? size_ % ring_capacity_ : size_;
  const size_t block = size_t(slot_index / kBlockEntries);
  if (block >= blocks_.size()) blocks_.emplace_back(new float[size_t(kBlockEntries * entry_dim_)]);
  std::memcpy(slot(slot_index), values, size_t(entry_dim_) * sizeof(float));
  return size_++;
}

const float* EntryStore::entry(int64_t i) const {
  return slot(ring_capacity_ > 0 ? i % ring_capacity_ : i);
}

int64_t EntryStore::resident() const noexcept {
  return ring_capacity_ > 0 ? std::min(size_, ring_capacity_) : size_;
}

size_t EntryStore::bytes_used() const noexcept {
  return size_t(resident()) * cache_format_entry_bytes(format_, entry_dim_);
}

size_t EntryStore::bytes_reserved() const noexcept {
  return blocks_.size() * size_t(kBlockEntries) * cache_format_entry_bytes(format_, entry_dim_);
}

void EntryStore::clear() {
  blocks_.clear();
  size_ = 0;
}

CompressorState::CompressorState(int64_t m, int64_t w, bool ov)
    : compress_ratio(m), width(w), overlap(ov), kv(size_t(m * w)), gate(size_t(m * w)) {
  if (overlap) {
    prev_kv_a.resize(size_t(m * w / 2));
    prev_gate_a.resize(size_t(m * w / 2));
  }
}

size_t CompressorState::bytes() const noexcept {
  return (kv.size() + gate.size() + prev_kv_a.size() + prev_gate_a.size()) * sizeof(float);
}

void CompressorState::clear() { has_prev = false; }

size_t CacheMemory::total_used(CacheKind kind) const {
  size_t total = 0;
  for (const auto& layer : bytes_used) total += layer[size_t(kind)];
  return total;
}
size_t CacheMemory::total_used() const {
  size_t total = 0;
  for (int k = 0; k < kNumCacheKinds; ++k) total += total_used(CacheKind(k));
  return total;
}
size_t CacheMemory::total_reserved() const {
  size_t total = 0;
  for (const auto& layer : bytes_reserved)
    for (size_t b : layer) total += b;
  return total;
}

KvCache::KvCache(const ModelConfig& c) {
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerCache lc;
    lc.window = EntryStore(CacheFormat::kF32, c.head_dim, c.sliding_window);
    const int64_t m = c.compress_ratio(l);
    if (m > 0) {
      const bool csa = m == kCsaCompressRatio;
      lc.compressed = EntryStore(CacheFormat::kF32, c.head_dim);
      lc.compressor = CompressorState(m, csa ? 2 * c.head_dim : c.head_dim, csa);
      if (csa) {
        lc.indexer = EntryStore(CacheFormat::kF32, c.index_head_dim);
        lc.indexer_compressor = CompressorState(m, 2 * c.index_head_dim, true);
      }
    }
    layers_.push_back(std::move(lc));
  }
}

CacheMemory KvCache::memory() const {
  CacheMemory mem;
  for (const LayerCache& lc : layers_) {
    const size_t state = lc.compressor.bytes() + lc.indexer_compressor.bytes();
    mem.bytes_used.push_back(
        {lc.window.bytes_used(), lc.compressed.bytes_used(), lc.indexer.bytes_used(), state});
    mem.bytes_reserved.push_back({lc.window.bytes_reserved(), lc.compressed.bytes_reserved(),
                                  lc.indexer.bytes_reserved(), state});
  }
  return mem;
}

void KvCache::clear() {
  for (LayerCache& lc : layers_) {
    lc.window.clear();
    lc.compressed.clear();
    lc.indexer.clear();
    lc.compressor.clear();
    lc.indexer_compressor.clear();
  }
}

}  // namespace dsv4
