// Checksums for files dsv4 writes itself (saved sessions): CRC-32C (Castagnoli) to detect
// corruption, FNV-1a 64 to fingerprint a model. Not cryptographic.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dsv4 {

namespace detail {
// Slicing-by-8 tables: eight bytes per step (about 2 GB/s, so checksumming a multi-GB cache is
// not what limits a save).
inline const std::array<std::array<uint32_t, 256>, 8>& crc32c_tables() noexcept {
  static const auto tables = [] {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    return t;
  }();
  return tables;
}

#if defined(__x86_64__)
// The SSE4.2 crc32 instruction (CRC-32C in hardware, about 8 bytes per cycle).
__attribute__((target("sse4.2"))) inline uint32_t crc32c_sse42(uint32_t crc, const uint8_t* p,
                                                               size_t n) noexcept {
  uint64_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    __builtin_memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  auto c32 = uint32_t(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return ~c32;
}
inline bool has_sse42() noexcept {
  static const bool yes = __builtin_cpu_supports("sse4.2");
  return yes;
}
#endif

}  // namespace detail

// CRC-32C with the slicing-by-8 tables (any CPU; the reference for the hardware path).
inline uint32_t crc32c_portable(uint32_t crc, const void* data, size_t n) noexcept {
  const auto& t = detail::crc32c_tables();
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    const uint32_t lo =
        crc ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
  }
  for (; n > 0; --n, ++p) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFF];
  return ~crc;
}

// Continues a CRC-32C over `n` more bytes (start with crc = 0): the SSE4.2 instruction where the
// CPU has it, the tables otherwise.
inline uint32_t crc32c(uint32_t crc, const void* data, size_t n) noexcept {
#if defined(__x86_64__)
  if (detail::has_sse42()) return detail::crc32c_sse42(crc, static_cast<const uint8_t*>(data), n);
#endif
  return crc32c_portable(crc, data, n);
}

// FNV-1a 64 continued over `n` more bytes (start with kFnvOffset).
inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
inline uint64_t fnv1a64(uint64_t h, const void* data, size_t n) noexcept {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
inline uint64_t fnv1a64(uint64_t h, std::string_view s) noexcept {
  return fnv1a64(h, s.data(), s.size());
}

}  // namespace dsv4
