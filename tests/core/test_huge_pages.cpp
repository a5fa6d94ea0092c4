// Buffers for streamed data (include/dsv4/core/huge_pages.hpp): aligned as promised and usable.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dsv4/core/huge_pages.hpp"

namespace {
bool aligned_to(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}
}  // namespace

TEST_CASE("huge-page buffers: 2 MiB aligned from 2 MiB on, cache-line aligned below", "[core]") {
  const size_t big = dsv4::kHugePageBytes + 12345, small = 1000;
  const auto a = dsv4::huge_page_bytes(big);
  const auto b = dsv4::huge_page_bytes(small);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(aligned_to(a.get(), dsv4::kHugePageBytes));
  CHECK(aligned_to(b.get(), 64));
  // Every byte is there: written and read back at both ends.
  std::memset(a.get(), 0x5a, big);
  CHECK(a[0] == 0x5a);
  CHECK(a[big - 1] == 0x5a);

  std::vector<float, dsv4::HugePageAllocator<float>> v(dsv4::kHugePageBytes / sizeof(float), 1.0f);
  CHECK(aligned_to(v.data(), dsv4::kHugePageBytes));
  v.push_back(2.0f);  // reallocates through the allocator and frees the old buffer
  CHECK(v.front() == 1.0f);
  CHECK(v.back() == 2.0f);
}
