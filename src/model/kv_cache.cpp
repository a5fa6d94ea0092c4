#include "dsv4/model/kv_cache.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "dsv4/core/status.hpp"

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

std::string_view kv_format_name(KvFormat format) noexcept {
  switch (format) {
    case KvFormat::kF32:
      return "f32";
    case KvFormat::kBF16:
      return "bf16";
    case KvFormat::kPacked:
      return "packed";
  }
  return "?";
}

bool parse_kv_format(std::string_view name, KvFormat* out) noexcept {
  for (KvFormat f : {KvFormat::kF32, KvFormat::kBF16, KvFormat::kPacked})
    if (name == kv_format_name(f)) {
      *out = f;
      return true;
    }
  return false;
}

EntryCodec main_entry_codec(const ModelConfig& c, KvFormat format) noexcept {
  EntryCodec codec;
  codec.dim = c.head_dim;
  codec.rope_dim = c.qk_rope_head_dim;
  codec.format = format == KvFormat::kPacked ? CacheFormat::kFp8Rope
                 : format == KvFormat::kBF16 ? CacheFormat::kBF16
                                             : CacheFormat::kF32;
  return codec;
}

EntryCodec indexer_entry_codec(const ModelConfig& c, KvFormat format) noexcept {
  EntryCodec codec;
  codec.dim = c.index_head_dim;
  codec.format = format == KvFormat::kPacked ? CacheFormat::kFp4
                 : format == KvFormat::kBF16 ? CacheFormat::kBF16
                                             : CacheFormat::kF32;
  // FP4 keys are stored rotated, as the official code does: the rotation spreads outliers over
  // the block so the 1-bit mantissa loses less. Scores are unchanged when c is a power of two
  // (the rotation is then orthonormal and queries are rotated alike).
  codec.rotate = codec.format == CacheFormat::kFp4;
  return codec;
}

EntryStore::EntryStore(EntryCodec codec, int64_t ring_capacity, int64_t block_entries)
    : codec_(codec),
      entry_bytes_(codec.bytes()),
      block_entries_(block_entries),
      ring_capacity_(ring_capacity) {}

uint8_t* EntryStore::slot(int64_t slot_index) const {
  return blocks_[size_t(slot_index / block_entries_)].get() +
         size_t(slot_index % block_entries_) * entry_bytes_;
}

namespace {
// Process-wide: a batched decode step allocates on OpenMP worker threads too.
std::atomic<int64_t> allocation_failure_countdown{-1};

std::shared_ptr<uint8_t[]> allocate_block(size_t bytes) {
  int64_t left = allocation_failure_countdown.load();
  while (left >= 0 && !allocation_failure_countdown.compare_exchange_weak(left, left - 1)) {
  }
  if (left == 0) throw std::bad_alloc();
  return std::shared_ptr<uint8_t[]>(new uint8_t[bytes]);
}
}  // namespace

void set_cache_allocation_failure_countdown(int64_t n) noexcept {
  allocation_failure_countdown.store(n);
}

uint8_t* EntryStore::next_slot() {
  const int64_t slot_index = ring_capacity_ > 0 ? size_ % ring_capacity_ : size_;
  const size_t block = size_t(slot_index / block_entries_);
  const size_t block_bytes = bytes_per_block();
  while (block >= blocks_.size()) {
    std::shared_ptr<uint8_t[]> fresh = allocate_block(block_bytes);
    resize_blocks(blocks_.size() + 1);
    blocks_.back() = std::move(fresh);
  }
  if (!blocks_[block]) load_block(int64_t(block));  // a block a rewind made partial again
  on_file_[block] = 0;                              // about to change
  last_use_[block] = spill_ ? spill_->now() : 0;
  if (shared_[block]) {
    // Copy-on-write: this store's own copy of a block it shares with a fork.
    std::shared_ptr<uint8_t[]> own = allocate_block(block_bytes);
    std::memcpy(own.get(), blocks_[block].get(), block_bytes);
    blocks_[block] = std::move(own);
    shared_[block] = 0;
  }
  // A ring slot about to lose an entry from before the transaction: keep its value.
  if (in_transaction_ && ring_capacity_ > 0 && size_ >= ring_capacity_ &&
      size_ - ring_capacity_ < begin_size_) {
    journal_slots_.push_back(slot_index);
    const uint8_t* old = slot(slot_index);
    journal_values_.insert(journal_values_.end(), old, old + entry_bytes_);
  }
  return slot(slot_index);
}

int64_t EntryStore::append(const float* values) {
  codec_.encode(values, next_slot());
  return size_++;
}

int64_t EntryStore::append_encoded(const uint8_t* entry) {
  std::memcpy(next_slot(), entry, entry_bytes_);
  return size_++;
}

void EntryStore::skip_ring_entries(int64_t n) {
  if (ring_capacity_ <= 0 || n < 0 || in_transaction_)
    fail(StatusCode::kInternal, "EntryStore::skip_ring_entries: only for rings, outside appends");
  size_ += n;
  // The skipped slots exist (zero until written), so a reader that looks at them before they are
  // rewritten reads finite values, never unallocated memory.
  const size_t block_bytes = bytes_per_block();
  const int64_t slots = std::min(size_, ring_capacity_);
  while (int64_t(blocks_.size()) * block_entries_ < slots) {
    std::shared_ptr<uint8_t[]> block = allocate_block(block_bytes);
    std::memset(block.get(), 0, block_bytes);
    resize_blocks(blocks_.size() + 1);
    blocks_.back() = std::move(block);
  }
}

void EntryStore::rewind(int64_t n) {
  if (n < 0 || n > size_ || in_transaction_)
    fail(StatusCode::kInternal, "EntryStore::rewind: bad count, or during an append");
  size_ = n;
  if (ring_capacity_ > 0) return;
  resize_blocks(size_t((n + block_entries_ - 1) / block_entries_));
}

void EntryStore::begin() {
  in_transaction_ = true;
  begin_size_ = size_;
  journal_slots_.clear();
  journal_values_.clear();
  // Reserve the worst case once so journalling never allocates mid-append.
  if (ring_capacity_ > 0) {
    journal_slots_.reserve(size_t(ring_capacity_));
    journal_values_.reserve(size_t(ring_capacity_) * entry_bytes_);
  }
}

void EntryStore::commit() noexcept {
  in_transaction_ = false;
  journal_slots_.clear();
  journal_values_.clear();
}

void EntryStore::rollback() noexcept {
  if (!in_transaction_) return;
  for (size_t i = 0; i < journal_slots_.size(); ++i)
    std::memcpy(slot(journal_slots_[i]), journal_values_.data() + i * entry_bytes_, entry_bytes_);
  size_ = begin_size_;
  // Blocks allocated by the failed transaction go; a ring keeps the blocks it had.
  const int64_t resident_slots = ring_capacity_ > 0 ? std::min(size_, ring_capacity_) : size_;
  resize_blocks(size_t((resident_slots + block_entries_ - 1) / block_entries_));
  commit();
}

const uint8_t* EntryStore::entry(int64_t i) const {
  const int64_t s = ring_capacity_ > 0 ? i % ring_capacity_ : i;
  if (!blocks_[size_t(s / block_entries_)])
    fail(StatusCode::kInternal, "a cache entry was read from a spilled block");
  return slot(s);
}

void EntryStore::resize_blocks(size_t n) {
  blocks_.resize(n);
  shared_.resize(n);
  extents_.resize(n);
  on_file_.resize(n);
  last_use_.resize(n);
}

void EntryStore::attach_spill_file(std::shared_ptr<SpillFile> file, bool lossy_cold) {
  if (ring_capacity_ > 0) fail(StatusCode::kInternal, "a window ring has no disk tier");
  spill_ = std::move(file);
  lossy_cold_ = lossy_cold;
}

namespace {
constexpr int64_t kColdBlock = 16;  // nope values per e2m1 scale in the lossy cold format
}  // namespace

size_t EntryStore::cold_entry_bytes() const noexcept {
  const int64_t nope = codec_.nope_dim(), blocks = (nope + kColdBlock - 1) / kColdBlock;
  return size_t((nope + 1) / 2 + blocks + 2 * codec_.rope_dim);
}

namespace {
// The lossy cold format of one entry: nope nibbles (two per byte), one ue8m0 scale per 16, the
// rope values as bf16.
void encode_cold(const EntryCodec& codec, const float* x, uint8_t* out) {
  const int64_t nope = codec.nope_dim();
  uint8_t nibbles[kColdBlock];
  uint8_t* scales = out + (nope + 1) / 2;
  std::memset(out, 0, size_t((nope + 1) / 2));
  for (int64_t b0 = 0, blk = 0; b0 < nope; b0 += kColdBlock, ++blk) {
    const int64_t n = std::min(kColdBlock, nope - b0);
    scales[blk] = quant::quantize_fp4_block(x + b0, n, nibbles);
    for (int64_t i = 0; i < n; ++i)
      out[(b0 + i) / 2] |= uint8_t(nibbles[i] << (((b0 + i) % 2) * 4));
  }
  uint8_t* rope = scales + (nope + kColdBlock - 1) / kColdBlock;
  for (int64_t i = 0; i < codec.rope_dim; ++i) {
    const uint16_t bits = float_to_bf16(x[nope + i]);
    std::memcpy(rope + 2 * i, &bits, 2);
  }
}

void decode_cold(const EntryCodec& codec, const uint8_t* in, float* x) {
  const int64_t nope = codec.nope_dim();
  const uint8_t* scales = in + (nope + 1) / 2;
  for (int64_t i = 0; i < nope; ++i)
    x[i] = fp4_e2m1_to_float(uint8_t((in[i / 2] >> ((i % 2) * 4)) & 0xf)) *
           ue8m0_to_float(scales[i / kColdBlock]);
  const uint8_t* rope = scales + (nope + kColdBlock - 1) / kColdBlock;
  for (int64_t i = 0; i < codec.rope_dim; ++i) {
    uint16_t bits;
    std::memcpy(&bits, rope + 2 * i, 2);
    x[nope + i] = bf16_to_float(bits);
  }
}
}  // namespace

void EntryStore::read_spilled(int64_t b, uint8_t* out) const {
  const SpillFile::Extent& e = extents_[size_t(b)];
  if (!lossy_cold_) {
    spill_->read(e, out);
    return;
  }
  thread_local std::vector<uint8_t> cold;
  thread_local std::vector<float> values;
  cold.resize(e.raw_bytes);
  values.resize(size_t(codec_.dim));
  spill_->read(e, cold.data());
  const size_t cold_bytes = cold_entry_bytes();
  for (int64_t j = 0; j < block_entries_; ++j) {
    decode_cold(codec_, cold.data() + size_t(j) * cold_bytes, values.data());
    codec_.encode(values.data(), out + size_t(j) * entry_bytes_);
  }
}

void EntryStore::load_block(int64_t b) const {
  const size_t block_bytes = bytes_per_block();
  std::shared_ptr<uint8_t[]> block = allocate_block(block_bytes);
  read_spilled(b, block.get());
  blocks_[size_t(b)] = std::move(block);
  ++misses_;
}

void EntryStore::ensure_resident(int64_t first, int64_t end) const {
  if (!spill_) return;
  thread_local std::vector<int64_t> blocks;
  blocks.clear();
  for (int64_t b = std::max<int64_t>(first, 0); b < std::min(end, int64_t(blocks_.size())); ++b)
    blocks.push_back(b);
  ensure_resident(blocks);
}

void EntryStore::ensure_resident(const std::vector<int64_t>& blocks) const {
  if (!spill_) return;
  const uint64_t now = spill_->now();
  // Scratch that lives as long as the thread: no allocation per step once warm.
  thread_local std::vector<int64_t> missing;
  thread_local std::vector<std::shared_ptr<uint8_t[]>> loaded;
  missing.clear();
  for (int64_t b : blocks) {
    if (b < 0 || b >= int64_t(blocks_.size())) continue;
    last_use_[size_t(b)] = now;
    if (blocks_[size_t(b)]) {
      ++hits_;
    } else {
      missing.push_back(b);
    }
  }
  if (missing.empty()) return;
  // Read back in parallel (pread and zstd per block); the first failure is rethrown.
  const size_t block_bytes = bytes_per_block();
  loaded.assign(missing.size(), nullptr);
  Status failed;
  // Plain pointers: inside the parallel region a thread_local name means the worker's own.
  const int64_t* want = missing.data();
  std::shared_ptr<uint8_t[]>* got = loaded.data();
  const auto n_missing = int64_t(missing.size());
#pragma omp parallel for schedule(dynamic) if (n_missing > 4)
  for (int64_t i = 0; i < n_missing; ++i) {
    Status s = capture_status([&] {
      got[i] = allocate_block(block_bytes);
      read_spilled(want[i], got[i].get());
    });
    if (!s) {
#pragma omp critical(dsv4_spill_read)
      if (failed.is_ok()) failed = s;
    }
  }
  throw_if_error(failed);
  for (size_t i = 0; i < missing.size(); ++i) blocks_[size_t(missing[i])] = std::move(loaded[i]);
  misses_ += missing.size();
}

const uint8_t* EntryStore::block_bytes(int64_t b, std::vector<uint8_t>& scratch) const {
  if (blocks_[size_t(b)]) return blocks_[size_t(b)].get();
  scratch.resize(bytes_per_block());
  read_spilled(b, scratch.data());
  return scratch.data();
}

bool EntryStore::spillable(int64_t b) const noexcept {
  // Also during an append: a full block no longer changes, and a rollback only drops blocks.
  return spill_ && blocks_[size_t(b)] && (b + 1) * block_entries_ <= size_;
}

void EntryStore::spill_block(int64_t b) {
  if (!spillable(b)) fail(StatusCode::kInternal, "EntryStore::spill_block: not a full block");
  if (!on_file_[size_t(b)]) {
    const uint8_t* block = blocks_[size_t(b)].get();
    if (lossy_cold_) {
      thread_local std::vector<uint8_t> cold;
      thread_local std::vector<float> values;
      const size_t cold_bytes = cold_entry_bytes();
      cold.assign(size_t(block_entries_) * cold_bytes, 0);
      values.resize(size_t(codec_.dim));
      for (int64_t j = 0; j < block_entries_; ++j) {
        codec_.decode(block + size_t(j) * entry_bytes_, values.data());
        encode_cold(codec_, values.data(), cold.data() + size_t(j) * cold_bytes);
      }
      extents_[size_t(b)] = spill_->write(cold.data(), cold.size());
    } else {
      extents_[size_t(b)] = spill_->write(block, bytes_per_block());
    }
    on_file_[size_t(b)] = 1;
  }
  blocks_[size_t(b)].reset();
  shared_[size_t(b)] = 0;  // nothing to copy-on-write: a later reader loads its own copy
}

size_t EntryStore::bytes_in_ram() const noexcept {
  size_t entries = 0;
  for (size_t b = 0; b < blocks_.size(); ++b)
    if (blocks_[b])
      entries +=
          size_t(std::min<int64_t>(block_entries_, resident() - int64_t(b) * block_entries_));
  return entries * entry_bytes_;
}

size_t EntryStore::bytes_on_disk() const noexcept { return bytes_used() - bytes_in_ram(); }

int64_t EntryStore::resident() const noexcept {
  return ring_capacity_ > 0 ? std::min(size_, ring_capacity_) : size_;
}

size_t EntryStore::bytes_used() const noexcept { return size_t(resident()) * entry_bytes_; }

size_t EntryStore::bytes_reserved() const noexcept {  // RAM: resident blocks
  const auto resident_blocks = size_t(std::count_if(
      blocks_.begin(), blocks_.end(), [](const auto& block) { return block != nullptr; }));
  return resident_blocks * bytes_per_block();
}

EntryStore EntryStore::fork() const {
  EntryStore copy(codec_, ring_capacity_, block_entries_);
  copy.size_ = size_;
  copy.blocks_ = blocks_;
  copy.spill_ = spill_;
  copy.lossy_cold_ = lossy_cold_;
  copy.extents_ = extents_;
  copy.on_file_ = on_file_;
  copy.last_use_ = last_use_;
  // Only marks that are not set yet are written: a store that is itself a snapshot (all marked)
  // can be forked from several threads at once.
  for (uint8_t& mark : shared_)
    if (!mark) mark = 1;
  copy.shared_ = shared_;
  return copy;
}

size_t EntryStore::bytes_shared() const noexcept {
  return size_t(std::count(shared_.begin(), shared_.end(), uint8_t(1))) * size_t(block_entries_) *
         entry_bytes_;
}

void EntryStore::clear() {
  resize_blocks(0);
  size_ = 0;
  begin_size_ = 0;
  journal_slots_.clear();
  journal_values_.clear();
}

CompressorState::CompressorState(int64_t m, int64_t w, bool ov)
    : compress_ratio(m), width(w), overlap(ov), kv(size_t(m * w)), gate(size_t(m * w)) {
  if (overlap) {
    prev_kv_a.resize(size_t(m * w / 2));
    prev_gate_a.resize(size_t(m * w / 2));
  }
}

void CompressorState::begin(int64_t position) {
  in_transaction_ = true;
  live_rows_ = compress_ratio > 0 ? position % compress_ratio : 0;
  saved_has_prev_ = has_prev;
  prev_saved_ = false;
  if (compress_ratio <= 0) return;
  if (row_saved_.size() != size_t(compress_ratio)) {
    row_saved_.assign(size_t(compress_ratio), 0);
    saved_kv_.resize(kv.size());
    saved_gate_.resize(gate.size());
    saved_prev_kv_a_.resize(prev_kv_a.size());
    saved_prev_gate_a_.resize(prev_gate_a.size());
  } else {
    std::fill(row_saved_.begin(), row_saved_.end(), 0);
  }
}

void CompressorState::journal_row(int64_t slot) {
  if (!in_transaction_ || slot >= live_rows_ || row_saved_[size_t(slot)]) return;
  row_saved_[size_t(slot)] = 1;
  const size_t at = size_t(slot * width), n = size_t(width);
  std::copy_n(kv.begin() + at, n, saved_kv_.begin() + at);
  std::copy_n(gate.begin() + at, n, saved_gate_.begin() + at);
}

void CompressorState::journal_prev() {
  if (!in_transaction_ || prev_saved_) return;
  prev_saved_ = true;
  saved_prev_kv_a_ = prev_kv_a;
  saved_prev_gate_a_ = prev_gate_a;
}

void CompressorState::commit() noexcept { in_transaction_ = false; }

void CompressorState::rollback() noexcept {
  if (!in_transaction_) return;
  for (int64_t slot = 0; slot < live_rows_; ++slot) {
    if (!row_saved_[size_t(slot)]) continue;
    const size_t at = size_t(slot * width), n = size_t(width);
    std::copy_n(saved_kv_.begin() + at, n, kv.begin() + at);
    std::copy_n(saved_gate_.begin() + at, n, gate.begin() + at);
  }
  if (prev_saved_) {
    std::copy(saved_prev_kv_a_.begin(), saved_prev_kv_a_.end(), prev_kv_a.begin());
    std::copy(saved_prev_gate_a_.begin(), saved_prev_gate_a_.end(), prev_gate_a.begin());
  }
  has_prev = saved_has_prev_;
  in_transaction_ = false;
}

size_t CompressorState::bytes() const noexcept {
  return (kv.size() + gate.size() + prev_kv_a.size() + prev_gate_a.size()) * sizeof(float);
}

size_t CompressorState::bytes_for(int64_t m, int64_t width, bool overlap) noexcept {
  return size_t(2 * m * width + (overlap ? m * width : 0)) * sizeof(float);
}

int64_t CompressorState::main_width(const ModelConfig& c, int64_t m) noexcept {
  return m == kCsaCompressRatio ? 2 * c.head_dim : c.head_dim;
}

int64_t CompressorState::indexer_width(const ModelConfig& c) noexcept {
  return 2 * c.index_head_dim;
}

void CompressorState::clear() { has_prev = false; }

size_t CacheMemory::total_used(CacheKind kind) const {
  size_t total = 0;
  for (const auto& layer : bytes_used) total += layer[size_t(kind)];
  return total;
}
size_t CacheMemory::total_on_disk() const {
  size_t total = 0;
  for (const auto& layer : bytes_on_disk)
    for (size_t b : layer) total += b;
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

namespace {
constexpr int64_t kIndexerBlockEntries = 512;
}  // namespace

KvCache::KvCache(const ModelConfig& c, KvFormat format) : format_(format) {
  const EntryCodec main = main_entry_codec(c, format), indexer = indexer_entry_codec(c, format);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerCache lc;
    lc.window = EntryStore(main, c.sliding_window);
    const int64_t m = c.compress_ratio(l);
    if (m > 0) {
      const bool csa = m == kCsaCompressRatio;
      lc.compressed = EntryStore(main);
      lc.compressor = CompressorState(m, CompressorState::main_width(c, m), csa);
      if (csa) {
        // Indexer keys are scored a block per GEMM call: bigger blocks, fewer calls.
        lc.indexer = EntryStore(indexer, 0, kIndexerBlockEntries);
        lc.indexer_compressor = CompressorState(m, CompressorState::indexer_width(c), true);
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
    mem.bytes_on_disk.push_back(
        {size_t(0), lc.compressed.bytes_on_disk(), lc.indexer.bytes_on_disk(), size_t(0)});
  }
  return mem;
}

void KvCache::begin(int64_t position) {
  for (LayerCache& lc : layers_) {
    lc.window.begin();
    lc.compressed.begin();
    lc.indexer.begin();
    lc.compressor.begin(position);
    lc.indexer_compressor.begin(position);
  }
}

void KvCache::commit() noexcept {
  for (LayerCache& lc : layers_) {
    lc.window.commit();
    lc.compressed.commit();
    lc.indexer.commit();
    lc.compressor.commit();
    lc.indexer_compressor.commit();
  }
}

void KvCache::rollback() noexcept {
  for (LayerCache& lc : layers_) {
    lc.window.rollback();
    lc.compressed.rollback();
    lc.indexer.rollback();
    lc.compressor.rollback();
    lc.indexer_compressor.rollback();
  }
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
