// A session's working memory for the forward pass: a bump arena whose chunks are kept between
// appends, so a decode step allocates nothing once the arena has seen its shape (the session
// reserves the one-token size at creation). Buffers are taken in a Scope and given back when the
// scope ends (per layer, per sub-layer), so the peak is one layer's working set, independent of the
// context length. Growing (a larger chunk than any before) is the only allocation; it throws
// std::bad_alloc, which the append turns into a status and a rollback.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <type_traits>
#include <vector>

namespace dsv4 {

class Workspace {
 public:
  static constexpr size_t kAlignment = 64;

  // A region of the arena; everything taken through it is released when it is destroyed.
  class Scope {
   public:
    explicit Scope(Workspace& ws) : ws_(ws), chunk_(ws.chunk_), offset_(ws.offset_) {}
    ~Scope() {
      ws_.chunk_ = chunk_;
      ws_.offset_ = offset_;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

    // n uninitialised values of a trivial type, 64-byte aligned.
    template <class T>
    std::span<T> take(size_t n) {
      static_assert(std::is_trivially_default_constructible_v<T> &&
                    std::is_trivially_destructible_v<T>);
      return {static_cast<T*>(ws_.take_bytes(n * sizeof(T))), n};
    }
    // The same, zero-filled.
    template <class T>
    std::span<T> zeros(size_t n) {
      std::span<T> s = take<T>(n);
      std::fill(s.begin(), s.end(), T{});
      return s;
    }

   private:
    Workspace& ws_;
    size_t chunk_, offset_;
  };

  // Makes sure `bytes` can be taken without allocating (one contiguous chunk at least that big).
  void reserve(size_t bytes) {
    for (const Chunk& c : chunks_)
      if (c.size >= bytes) return;
    add_chunk(bytes);
  }
  size_t capacity() const noexcept {
    size_t total = 0;
    for (const Chunk& c : chunks_) total += c.size;
    return total;
  }
  // The most bytes in use at once since creation (or reset_high_water).
  size_t high_water() const noexcept { return high_water_; }
  void reset_high_water() noexcept { high_water_ = in_use(); }

 private:
  struct AlignedDelete {
    void operator()(std::byte* p) const noexcept {
      ::operator delete[](p, std::align_val_t(kAlignment));
    }
  };
  struct Chunk {
    std::unique_ptr<std::byte[], AlignedDelete> data;
    size_t size = 0;
  };

  size_t in_use() const noexcept {
    size_t used = offset_;
    for (size_t i = 0; i < chunk_ && i < chunks_.size(); ++i) used += chunks_[i].size;
    return used;
  }

  void* take_bytes(size_t bytes) {
    bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    // Move on to the first chunk (from the current one) with room; add one if none has.
    while (chunk_ < chunks_.size() && offset_ + bytes > chunks_[chunk_].size) {
      ++chunk_;
      offset_ = 0;
    }
    if (chunk_ == chunks_.size()) {
      add_chunk(std::max(bytes, capacity()));  // geometric growth
      offset_ = 0;
    }
    std::byte* p = chunks_[chunk_].data.get() + offset_;
    offset_ += bytes;
    high_water_ = std::max(high_water_, in_use());
    return p;
  }

  void add_chunk(size_t bytes) {
    bytes = std::max<size_t>((bytes + kAlignment - 1) / kAlignment * kAlignment, 1 << 16);
    Chunk c;
    c.data.reset(static_cast<std::byte*>(::operator new[](bytes, std::align_val_t(kAlignment))));
    c.size = bytes;
    chunks_.push_back(std::move(c));
  }

  std::vector<Chunk> chunks_;
  size_t chunk_ = 0, offset_ = 0, high_water_ = 0;
};

}  // namespace dsv4
