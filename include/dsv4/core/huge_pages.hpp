// Buffers in transparent huge pages, for what is streamed from memory: a loaded model's repacked
// weights, and the benchmarks' weights and streaming-read limit, which must be read the way the
// model's weights are (in 4 KiB pages the same read measured about a fifth slower on the AMD host).
#pragma once

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace dsv4 {

inline constexpr size_t kHugePageBytes = size_t(2) << 20;

// Allocates 2 MiB aligned and advises huge pages for requests of 2 MiB or more (the kernel's
// madvise mode; advice only: without it the pages are plain), 64-byte aligned below that. Throws
// std::bad_alloc like std::allocator.
template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  static std::align_val_t alignment(size_t bytes) noexcept {
    return std::align_val_t{bytes >= kHugePageBytes ? kHugePageBytes : 64};
  }
  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    void* p = ::operator new(bytes, alignment(bytes));
#if defined(MADV_HUGEPAGE)
    if (bytes >= kHugePageBytes)
      ::madvise(p, bytes / kHugePageBytes * kHugePageBytes, MADV_HUGEPAGE);
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept { ::operator delete(p, alignment(n * sizeof(T))); }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

// n bytes from HugePageAllocator, owned.
inline std::shared_ptr<uint8_t[]> huge_page_bytes(size_t n) {
  uint8_t* p = HugePageAllocator<uint8_t>().allocate(n);
  return std::shared_ptr<uint8_t[]>(
      p, [n](uint8_t* q) { HugePageAllocator<uint8_t>().deallocate(q, n); });
}

}  // namespace dsv4
