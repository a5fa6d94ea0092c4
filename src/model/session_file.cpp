// Saved sessions: the file format behind Session::save / Session::load, and Session::fork.
//
// Layout (little-endian), version 2:
//   header, 64 bytes: magic "DSV4SES\0", u32 version, u32 flags (0), u64 model fingerprint,
//     i32 kv_format, i32 numerics, i32 swa_strategy, i32 reserved (0), i64 position,
//     i64 n_layers, u32 CRC-32C of the preceding 56 bytes, u32 reserved (0)
//   sections, each: u32 tag, u32 reserved (0), u64 payload length, payload, u32 CRC-32C of the
//     payload, u32 reserved (0)
//     kTokens      i32[position]
//     kWindowAt    i64 window position (the position the rings and compressor states are at:
//                  `position` for kFull, the checkpoint for kCheckpoint, −1 for kNone: none are
//                  stored), i64 first chunk (Session::first_chunk_)
//     kStore       u32 layer, u32 kind (window, compressed, indexer), i64 logical size,
//                  i64 stored entries (the resident ones, oldest first), i64 bytes per entry,
//                  the entries as the cache stores them
//     kCompressor  u32 layer, u32 which (0 main, 1 indexer), i64 m, i64 row width,
//                  u32 overlap, u32 has_prev, f32 kv[m·width], gate[m·width],
//                  prev_kv_a[m·width/2], prev_gate_a[m·width/2] (overlap only)
//     kEnd         empty: the last section; nothing may follow it
// Version 1 (no kWindowAt, kFull only) is still read.
// A reader refuses what it cannot vouch for: wrong magic, a newer version, a checksum mismatch,
// a length past the end of the file, a section that does not fit the model's cache.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>

#include "dsv4/core/checksum.hpp"
#include "dsv4/model/session.hpp"

namespace dsv4 {
namespace {

constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'S', 'E', 'S', '\0'};
constexpr uint32_t kVersion = 2;
constexpr size_t kHeaderBytes = 64;
enum Tag : uint32_t { kTokens = 1, kStore = 2, kCompressor = 3, kWindowAt = 4, kEnd = 0xFFFF };
enum StoreKind : uint32_t { kWindowStore = 0, kCompressedStore = 1, kIndexerStore = 2 };

// Test hook: fail the write after this many more bytes (< 0: never).
std::atomic<int64_t> g_write_failure_after{-1};

std::string errno_text() { return std::strerror(errno); }

// Writes a temporary file with per-section checksums; publish() makes it durable and renames it
// over the target. Destroyed without publish(), it removes the temporary file.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path)
      : path_(path), temp_(path + ".tmp." + std::to_string(::getpid())) {
    file_ = std::fopen(temp_.c_str(), "wb");
    if (!file_) fail(StatusCode::kIo, "cannot create " + temp_ + ": " + errno_text());
  }
  ~AtomicFileWriter() {
    if (file_) std::fclose(file_);
    if (!published_) std::remove(temp_.c_str());
  }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void raw(const void* data, size_t n) {
    if (n == 0) return;
    const int64_t budget = g_write_failure_after.load();
    if (budget >= 0) {
      if (int64_t(n) > budget) {
        g_write_failure_after = -1;
        errno = ENOSPC;
        fail(StatusCode::kIo, "cannot write " + temp_ + ": " + errno_text() + " (injected)");
      }
      g_write_failure_after = budget - int64_t(n);
    }
    if (std::fwrite(data, 1, n, file_) != n)
      fail(StatusCode::kIo, "cannot write " + temp_ + ": " + errno_text());
  }
  void begin_section(Tag tag, uint64_t length) {
    const uint32_t head[2] = {tag, 0};
    raw(head, sizeof head);
    raw(&length, sizeof length);
    crc_ = 0;
    left_ = length;
  }
  void payload(const void* data, size_t n) {
    if (n > left_)
      fail(StatusCode::kInternal, "session file: section payload longer than declared");
    crc_ = crc32c(crc_, data, n);
    left_ -= n;
    raw(data, n);
  }
  template <class T>
  void value(T v) {
    payload(&v, sizeof v);
  }
  void end_section() {
    if (left_ != 0) fail(StatusCode::kInternal, "session file: section shorter than declared");
    const uint32_t tail[2] = {crc_, 0};
    raw(tail, sizeof tail);
  }
  void publish() {
    if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
      fail(StatusCode::kIo, "cannot flush " + temp_ + ": " + errno_text());
    const int closed = std::fclose(file_);
    file_ = nullptr;
    if (closed != 0) fail(StatusCode::kIo, "cannot close " + temp_ + ": " + errno_text());
    if (std::rename(temp_.c_str(), path_.c_str()) != 0)
      fail(StatusCode::kIo, "cannot rename " + temp_ + " to " + path_ + ": " + errno_text());
    published_ = true;
    // The rename itself is durable once the directory is synced.
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }

 private:
  std::string path_, temp_;
  std::FILE* file_ = nullptr;
  bool published_ = false;
  uint32_t crc_ = 0;
  uint64_t left_ = 0;
};

// Sequential reads of a session file; every read is bounds-checked against the file's size and
// each section's checksum is verified before its payload is used.
class SessionFileReader {
 public:
  explicit SessionFileReader(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) fail(StatusCode::kIo, "cannot open " + path + ": " + errno_text());
    std::error_code ec;
    size_ = std::filesystem::file_size(path, ec);
    if (ec) fail(StatusCode::kIo, "cannot stat " + path + ": " + ec.message());
  }
  ~SessionFileReader() {
    if (file_) std::fclose(file_);
  }
  SessionFileReader(const SessionFileReader&) = delete;
  SessionFileReader& operator=(const SessionFileReader&) = delete;

  [[noreturn]] void corrupt(const std::string& what) const {
    fail(StatusCode::kCorruptFile, "session file " + path_ + ": " + what);
  }
  uint64_t left() const noexcept { return size_ - offset_; }
  void raw(void* data, size_t n) {
    if (n > left())
      corrupt("truncated (" + std::to_string(left()) + " bytes left, " + std::to_string(n) +
              " needed at offset " + std::to_string(offset_) + ")");
    if (std::fread(data, 1, n, file_) != n)
      fail(StatusCode::kIo, "cannot read " + path_ + ": " + errno_text());
    offset_ += n;
  }
  template <class T>
  T value() {
    T v;
    raw(&v, sizeof v);
    if (in_section_) consume(&v, sizeof v);
    return v;
  }
  void payload(void* data, size_t n) {
    raw(data, n);
    consume(data, n);
  }
  // The next section's tag and payload length.
  std::pair<uint32_t, uint64_t> begin_section() {
    const uint32_t tag = value<uint32_t>(), reserved = value<uint32_t>();
    const uint64_t length = value<uint64_t>();
    if (reserved != 0) corrupt("bad section header at offset " + std::to_string(offset_ - 16));
    if (length > left())
      corrupt("a section claims " + std::to_string(length) + " bytes, " + std::to_string(left()) +
              " remain (truncated)");
    in_section_ = true;
    crc_ = 0;
    left_in_section_ = length;
    return {tag, length};
  }
  void end_section() {
    if (left_in_section_ != 0) corrupt("a section's payload is longer than its contents");
    in_section_ = false;
    const uint32_t want = value<uint32_t>();
    (void)value<uint32_t>();
    if (want != crc_) corrupt("checksum mismatch (the file is damaged)");
  }

 private:
  void consume(const void* data, size_t n) {
    if (n > left_in_section_) corrupt("a section's contents run past its declared length");
    left_in_section_ -= n;
    crc_ = crc32c(crc_, data, n);
  }
  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t size_ = 0, offset_ = 0;
  bool in_section_ = false;
  uint32_t crc_ = 0;
  uint64_t left_in_section_ = 0;
};

struct Header {
  uint32_t version = 0;
  uint64_t fingerprint = 0;
  int32_t kv_format = 0, numerics = 0, swa_strategy = 0;
  int64_t position = 0, n_layers = 0;
};

void write_header(AtomicFileWriter& out, const Header& h) {
  uint8_t bytes[kHeaderBytes] = {};
  std::memcpy(bytes, kMagic, 8);
  std::memcpy(bytes + 8, &kVersion, 4);
  std::memcpy(bytes + 16, &h.fingerprint, 8);
  std::memcpy(bytes + 24, &h.kv_format, 4);
  std::memcpy(bytes + 28, &h.numerics, 4);
  std::memcpy(bytes + 32, &h.swa_strategy, 4);
  std::memcpy(bytes + 40, &h.position, 8);
  std::memcpy(bytes + 48, &h.n_layers, 8);
  const uint32_t crc = crc32c(0, bytes, 56);
  std::memcpy(bytes + 56, &crc, 4);
  out.raw(bytes, sizeof bytes);
}

Header read_header(SessionFileReader& in) {
  uint8_t bytes[kHeaderBytes];
  in.raw(bytes, sizeof bytes);
  if (std::memcmp(bytes, kMagic, 8) != 0) in.corrupt("not a dsv4 session file (bad magic)");
  uint32_t version = 0, crc = 0;
  std::memcpy(&version, bytes + 8, 4);
  std::memcpy(&crc, bytes + 56, 4);
  if (crc != crc32c(0, bytes, 56)) in.corrupt("header checksum mismatch (the file is damaged)");
  if (version > kVersion)
    fail(StatusCode::kUnsupported, "session file format version " + std::to_string(version) +
                                       " is newer than this build reads (" +
                                       std::to_string(kVersion) + ")");
  if (version == 0) in.corrupt("format version 0");
  Header h;
  h.version = version;
  std::memcpy(&h.fingerprint, bytes + 16, 8);
  std::memcpy(&h.kv_format, bytes + 24, 4);
  std::memcpy(&h.numerics, bytes + 28, 4);
  std::memcpy(&h.swa_strategy, bytes + 32, 4);
  std::memcpy(&h.position, bytes + 40, 8);
  std::memcpy(&h.n_layers, bytes + 48, 8);
  return h;
}

// The resident entries of a store, oldest first.
void write_store(AtomicFileWriter& out, uint32_t layer, StoreKind kind, const EntryStore& store) {
  const int64_t first = store.size() - store.resident();
  const auto entry_bytes = int64_t(store.codec().bytes());
  out.begin_section(kStore, 8 + 3 * 8 + uint64_t(store.resident() * entry_bytes));
  out.value(layer);
  out.value(uint32_t(kind));
  out.value(store.size());
  out.value(store.resident());
  out.value(entry_bytes);
  if (first == 0 && store.size() > 0 && !store.is_ring()) {
    // A non-ring store: its blocks hold consecutive entries; write a block per call (spilled
    // blocks are read back into scratch, without making them resident).
    std::vector<uint8_t> scratch;
    for (int64_t b = 0; b * store.block_entries() < store.size(); ++b) {
      const int64_t n = std::min(store.block_entries(), store.size() - b * store.block_entries());
      out.payload(store.block_bytes(b, scratch), size_t(n * entry_bytes));
    }
  } else {
    for (int64_t i = first; i < store.size(); ++i) out.payload(store.entry(i), size_t(entry_bytes));
  }
  out.end_section();
}

void write_compressor(AtomicFileWriter& out, uint32_t layer, uint32_t which,
                      const CompressorState& s) {
  const auto floats = [](const std::vector<float>& v) { return uint64_t(v.size()) * 4; };
  const uint64_t length =
      8 + 2 * 8 + 8 + floats(s.kv) + floats(s.gate) + floats(s.prev_kv_a) + floats(s.prev_gate_a);
  out.begin_section(kCompressor, length);
  out.value(layer);
  out.value(which);
  out.value(s.compress_ratio);
  out.value(s.width);
  out.value(uint32_t(s.overlap));
  out.value(uint32_t(s.has_prev));
  for (const std::vector<float>* v : {&s.kv, &s.gate, &s.prev_kv_a, &s.prev_gate_a})
    out.payload(v->data(), v->size() * 4);
  out.end_section();
}

// The logical size a store of `kind` in `layer` has after `position` tokens.
int64_t expected_size(const ModelConfig& c, int64_t layer, StoreKind kind, int64_t position) {
  const int64_t m = c.compress_ratio(layer);
  switch (kind) {
    case kWindowStore:
      return position;
    case kCompressedStore:
      return m > 0 ? position / m : -1;
    case kIndexerStore:
      return m == kCsaCompressRatio ? position / m : -1;
  }
  return -1;
}

// `window_position`: where the rings are (−1: the file stores none). `keep_budget` runs every few
// thousand entries, so a session with a RAM budget stays within it while it loads.
void read_store(SessionFileReader& in, const ModelConfig& c, KvCache& cache, int64_t position,
                int64_t window_position, std::set<std::pair<uint32_t, uint32_t>>& seen,
                const std::function<void()>& keep_budget) {
  const auto layer = in.value<uint32_t>(), kind = in.value<uint32_t>();
  const auto size = in.value<int64_t>(), stored = in.value<int64_t>();
  const auto entry_bytes = in.value<int64_t>();
  const std::string where = "layer " + std::to_string(layer) + " store " + std::to_string(kind);
  if (layer >= uint32_t(c.num_hidden_layers) || kind > kIndexerStore)
    in.corrupt("a cache section for " + where + ", which this model does not have");
  if (!seen.insert({layer, kind}).second) in.corrupt(where + " appears twice");
  if (kind == kWindowStore && window_position < 0)
    in.corrupt(where + ": a window ring in a file saved without them");
  const int64_t tokens = kind == kWindowStore ? window_position : position;
  if (size != expected_size(c, layer, StoreKind(kind), tokens))
    in.corrupt(where + " holds " + std::to_string(size) + " entries, not what " +
               std::to_string(tokens) + " tokens give");
  LayerCache& lc = cache.layer(layer);
  EntryStore& store = kind == kWindowStore       ? lc.window
                      : kind == kCompressedStore ? lc.compressed
                                                 : lc.indexer;
  const int64_t resident = kind == kWindowStore ? std::min(size, c.sliding_window) : size;
  if (stored != resident || entry_bytes != int64_t(store.codec().bytes()))
    in.corrupt(where + ": " + std::to_string(stored) + " entries of " +
               std::to_string(entry_bytes) + " bytes where the cache keeps " +
               std::to_string(resident) + " of " + std::to_string(store.codec().bytes()));
  if (size > resident) store.skip_ring_entries(size - resident);
  std::vector<uint8_t> entry(static_cast<size_t>(entry_bytes));
  for (int64_t i = 0; i < stored; ++i) {
    in.payload(entry.data(), entry.size());
    store.append_encoded(entry.data());
    if (i % 4096 == 4095) keep_budget();
  }
}

void read_compressor(SessionFileReader& in, KvCache& cache, bool with_window,
                     std::set<std::pair<uint32_t, uint32_t>>& seen) {
  const auto layer = in.value<uint32_t>(), which = in.value<uint32_t>();
  const auto m = in.value<int64_t>(), width = in.value<int64_t>();
  const auto overlap = in.value<uint32_t>(), has_prev = in.value<uint32_t>();
  const std::string where =
      "layer " + std::to_string(layer) + " compressor " + std::to_string(which);
  if (layer >= uint32_t(cache.n_layers()) || which > 1)
    in.corrupt("a compressor section for " + where + ", which this model does not have");
  if (!with_window) in.corrupt(where + ": a compressor state in a file saved without them");
  if (!seen.insert({layer, 16 + which}).second) in.corrupt(where + " appears twice");
  CompressorState& s =
      which == 0 ? cache.layer(layer).compressor : cache.layer(layer).indexer_compressor;
  if (s.compress_ratio == 0 || m != s.compress_ratio || width != s.width ||
      overlap != uint32_t(s.overlap) || has_prev > 1)
    in.corrupt(where + " does not fit the model's compressor");
  for (std::vector<float>* v : {&s.kv, &s.gate, &s.prev_kv_a, &s.prev_gate_a})
    in.payload(v->data(), v->size() * 4);
  s.has_prev = has_prev != 0;
}

// The store and compressor sections a complete file holds: every layer's compressed entries and
// indexer keys, and with the window (kFull, kCheckpoint) every ring and compressor state.
size_t expected_sections(const ModelConfig& c, bool with_window) {
  size_t n = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const int64_t m = c.compress_ratio(l);
    const int64_t stores = (m > 0 ? 1 : 0) + (m == kCsaCompressRatio ? 1 : 0);
    n += size_t(stores) + (with_window ? size_t(1 + stores) : 0);
  }
  return n;
}

}  // namespace

void set_session_write_failure_after(int64_t bytes) noexcept { g_write_failure_after = bytes; }

Status Session::save(const std::string& path, const SaveOptions& options) const {
  if (path.empty()) return Status(StatusCode::kInvalidArgument, "Session::save: empty path");
  const SwaStrategy strategy = options.swa_strategy;
  if (strategy != SwaStrategy::kFull && strategy != SwaStrategy::kCheckpoint &&
      strategy != SwaStrategy::kNone)
    return Status(StatusCode::kInvalidArgument,
                  "unknown swa_strategy " + std::to_string(int32_t(strategy)));
  if (strategy == SwaStrategy::kCheckpoint && options.checkpoint_interval <= 0)
    return Status(StatusCode::kInvalidArgument,
                  "swa_strategy checkpoint needs a positive checkpoint_interval, not " +
                      std::to_string(options.checkpoint_interval));
  return capture_status([&] {
    const ModelConfig& c = model_->config();
    // Where the stored rings and compressor states come from, and the position they are at: the
    // session itself, its kept checkpoint, or a fork rebuilt at the checkpoint position.
    int64_t window_position = strategy == SwaStrategy::kNone ? -1 : position_;
    std::vector<const EntryStore*> rings;
    std::vector<const CompressorState*> states;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      rings.push_back(&cache_.layer(l).window);
      states.push_back(&cache_.layer(l).compressor);
      states.push_back(&cache_.layer(l).indexer_compressor);
    }
    std::unique_ptr<Session> rebuilt;
    if (strategy == SwaStrategy::kCheckpoint) {
      window_position = position_ - position_ % options.checkpoint_interval;
      if (window_position < position_ && checkpoint_ && checkpoint_->position == window_position) {
        for (size_t l = 0; l < rings.size(); ++l) rings[l] = &checkpoint_->rings[l];
        for (size_t i = 0; i < states.size(); ++i) states[i] = &checkpoint_->states[i];
      } else if (window_position < position_) {
        auto at = rebuilt_at(window_position);
        throw_if_error(at.status());
        rebuilt = std::move(at.value());
        for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
          const LayerCache& lc = rebuilt->cache_.layer(l);
          rings[size_t(l)] = &lc.window;
          states[size_t(2 * l)] = &lc.compressor;
          states[size_t(2 * l + 1)] = &lc.indexer_compressor;
        }
      }
    }
    AtomicFileWriter out(path);
    write_header(out,
                 {kVersion, model_->fingerprint(), int32_t(cache_.format()),
                  int32_t(model_->numerics()), int32_t(strategy), position_, c.num_hidden_layers});
    out.begin_section(kTokens, uint64_t(tokens_.size()) * 4);
    out.payload(tokens_.data(), tokens_.size() * 4);
    out.end_section();
    out.begin_section(kWindowAt, 16);
    out.value(window_position);
    out.value(first_chunk_);
    out.end_section();
    const bool with_window = window_position >= 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const LayerCache& lc = cache_.layer(l);
      const int64_t m = c.compress_ratio(l);
      if (with_window) write_store(out, uint32_t(l), kWindowStore, *rings[size_t(l)]);
      if (m <= 0) continue;
      write_store(out, uint32_t(l), kCompressedStore, lc.compressed);
      if (with_window) write_compressor(out, uint32_t(l), 0, *states[size_t(2 * l)]);
      if (m != kCsaCompressRatio) continue;
      write_store(out, uint32_t(l), kIndexerStore, lc.indexer);
      if (with_window) write_compressor(out, uint32_t(l), 1, *states[size_t(2 * l + 1)]);
    }
    out.begin_section(kEnd, 0);
    out.end_section();
    out.publish();
  });
}

Result<std::unique_ptr<Session>> Session::load(std::shared_ptr<const Model> model,
                                               const std::string& path,
                                               const SessionOptions& options) {
  if (!model) return Status(StatusCode::kInvalidArgument, "Session::load: model is null");
  return capture_result([&]() -> std::unique_ptr<Session> {
    const ModelConfig& c = model->config();
    SessionFileReader in(path);
    const Header h = read_header(in);
    if (h.fingerprint != model->fingerprint() || h.n_layers != c.num_hidden_layers)
      fail(StatusCode::kModelMismatch,
           "session file " + path + " was saved with another model (config or weights differ)");
    if (h.numerics != int32_t(model->numerics()))
      fail(StatusCode::kModelMismatch,
           "session file " + path + " was saved with the " +
               (h.numerics == int32_t(Numerics::kOfficial) ? "official" : "exact") +
               " numerics; this model runs the other mode");
    const bool known_strategy =
        h.swa_strategy == int32_t(SwaStrategy::kFull) ||
        (h.version >= 2 && (h.swa_strategy == int32_t(SwaStrategy::kNone) ||
                            h.swa_strategy == int32_t(SwaStrategy::kCheckpoint)));
    if (h.kv_format < 0 || h.kv_format > int32_t(KvFormat::kPacked) || !known_strategy ||
        h.position < 0)
      in.corrupt("bad header fields");
    if (options.max_positions > 0 && h.position > options.max_positions)
      fail(StatusCode::kOutOfRange, "the saved session holds " + std::to_string(h.position) +
                                        " tokens, over max_positions " +
                                        std::to_string(options.max_positions));
    const auto strategy = SwaStrategy(h.swa_strategy);
    SessionOptions chosen = options;
    chosen.kv_format = KvFormat(h.kv_format);
    auto created = create(model, chosen);
    throw_if_error(created.status());
    std::unique_ptr<Session> session = std::move(created.value());
    if (session->cache_.format() != KvFormat(h.kv_format)) in.corrupt("bad cache format");

    // Version 1 files hold the window at the end position, and no first-chunk record (taken as
    // at least a window long: only the official numerics' padding of a shorter one needs it).
    int64_t window_position = h.position;
    int64_t first_chunk = std::min(h.position, c.sliding_window);
    bool window_at_seen = h.version < 2;
    std::set<std::pair<uint32_t, uint32_t>> seen;
    bool tokens_seen = false;
    for (;;) {
      const auto [tag, length] = in.begin_section();
      if (tag == kEnd) {
        in.end_section();
        break;
      }
      if (tag == kTokens) {
        if (tokens_seen || length != uint64_t(h.position) * 4)
          in.corrupt("the token section does not match the position");
        session->tokens_.resize(size_t(h.position));
        in.payload(session->tokens_.data(), session->tokens_.size() * 4);
        for (int32_t t : session->tokens_)
          if (t < 0 || t >= c.vocab_size) in.corrupt("a token id outside the vocabulary");
        tokens_seen = true;
      } else if (tag == kWindowAt) {
        if (window_at_seen || length != 16) in.corrupt("a misplaced or malformed window section");
        window_position = in.value<int64_t>();
        first_chunk = in.value<int64_t>();
        const bool position_fits = strategy == SwaStrategy::kFull ? window_position == h.position
                                   : strategy == SwaStrategy::kCheckpoint
                                       ? window_position >= 0 && window_position <= h.position
                                       : window_position == -1;
        if (!position_fits || first_chunk < 0 || first_chunk > h.position ||
            (first_chunk == 0) != (h.position == 0))
          in.corrupt("the window section does not fit the header");
        window_at_seen = true;
      } else if (!window_at_seen) {
        in.corrupt("cache sections before the window section");
      } else if (tag == kStore) {
        read_store(in, c, session->cache_, h.position, window_position, seen,
                   [&session] { session->enforce_ram_budget(); });
      } else if (tag == kCompressor) {
        read_compressor(in, session->cache_, window_position >= 0, seen);
      } else {
        in.corrupt("unknown section tag " + std::to_string(tag));
      }
      in.end_section();
    }
    if (in.left() != 0) in.corrupt("data after the end section");
    if (!tokens_seen || !window_at_seen ||
        seen.size() != expected_sections(c, window_position >= 0))
      in.corrupt("sections are missing (the file is incomplete)");
    session->position_ = h.position;
    session->first_chunk_ = first_chunk;
    // The window the file does not hold is recomputed: from the checkpoint, or (none stored) the
    // last rebuild_span() tokens from their ids.
    if (window_position < 0) {
      const int64_t from = session->rebuild_start(h.position);
      for (int64_t l = 0; l < c.num_hidden_layers; ++l)
        session->cache_.layer(l).window.skip_ring_entries(from);
      session->rebuild_window(from, h.position, false);
    } else if (window_position < h.position) {
      // A checkpoint at the session's own interval is kept as its checkpoint.
      const int64_t interval = session->options_.window_checkpoint_interval;
      if (interval > 0 && window_position > 0 && window_position % interval == 0)
        session->checkpoint_ = session->capture_window(window_position);
      session->rebuild_window(window_position, h.position, true);
    }
    session->enforce_ram_budget();
    return session;
  });
}

Result<std::unique_ptr<Session>> Session::fork() const {
  auto created = create(model_, options_);
  if (!created) return created.status();
  std::unique_ptr<Session> copy = std::move(created.value());
  Status copied = capture_status([&] {
    for (int64_t l = 0; l < cache_.n_layers(); ++l) {
      const LayerCache& from = cache_.layer(l);
      LayerCache& to = copy->cache_.layer(l);
      // Copy-on-write: the fork shares every block until one side writes to it.
      to.window = from.window.fork();
      to.compressed = from.compressed.fork();
      to.indexer = from.indexer.fork();
      to.compressor = from.compressor;
      to.indexer_compressor = from.indexer_compressor;
    }
    copy->tokens_ = tokens_;
    copy->position_ = position_;
    copy->first_chunk_ = first_chunk_;
    copy->checkpoint_ = checkpoint_;  // immutable: shared
    copy->spill_ = spill_;            // the stores' spilled blocks live there
  });
  if (!copied) return copied;
  return copy;
}

}  // namespace dsv4
