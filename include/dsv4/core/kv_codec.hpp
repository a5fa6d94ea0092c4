// Storage formats of KV-cache entries and the quantisation grids they use, as DeepSeek's own
// inference code defines them (../shared/spec/official-numerics.md §1, §3, §4):
//
//   kF32      dim fp32 values
//   kBF16     dim bf16 values (round to nearest even)
//   kFp8Rope  the "packed" main-KV entry: the first dim − rope nope values as e4m3 codes with one
//             ue8m0 scale per 64 (a partial last block when dim − rope is not a multiple of 64),
//             padding to an even byte count, then the rope values as bf16. 584 bytes for d = 512,
//             rope 64 (the fp8_ds_mla layout).
//   kFp4      the "packed" indexer key: dim e2m1 codes (two per byte, even element in the low
//             nibble) and one ue8m0 scale per 32; 68 bytes for c = 128. With `rotate` the entry
//             holds the Hadamard rotation of the key (queries must be rotated the same way).
//
// Scales are ceiling powers of two of amax / max-code (`fast_round_scale`), so the largest element
// of a block lands in the top binade. Encoding is the official fake-quantisation; decoding gives
// exactly the values the official code keeps in its BF16 cache.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dsv4/core/dtype.hpp"

namespace dsv4 {

namespace quant {

inline constexpr int64_t kFp8Block = 64;  // KV nope block (act_quant block size for the cache)
inline constexpr int64_t kFp4Block = 32;  // indexer key block
inline constexpr float kAmaxFloorFp8 = 1e-4f;
inline const float kAmaxFloorFp4 = 6.0f * 0x1p-126f;

// fast_round_scale: the exponent e of s = 2^e, the ceiling power of two of fl32(amax · inv_max)
// read off its bits (2^(exp − 127 + (mantissa ≠ 0))).
inline int ceil_pow2_exponent(float amax, float inv_max) noexcept {
  const uint32_t bits = detail::bits_as<uint32_t>(amax * inv_max);
  const int exp_field = int((bits >> 23) & 0xffu);
  return exp_field - 127 + ((bits & 0x7fffffu) != 0 ? 1 : 0);
}

// 2^e for e in [-126, 127], from the bits.
inline float pow2(int e) noexcept { return detail::bits_as<float>(uint32_t(e + 127) << 23); }

// e4m3 code of x, round to nearest even, for |x| <= 448 (callers clamp first): the same codes as
// float_to_fp8_e4m3, from the float's bits instead of libm (appends encode every cached key).
inline uint8_t e4m3_rne(float x) noexcept {
  const uint32_t u = detail::bits_as<uint32_t>(x);
  const uint8_t sign = uint8_t((u >> 24) & 0x80u);
  const float a = std::fabs(x);
  if (a < 0x1p-6f)
    return uint8_t(sign | uint8_t(std::nearbyint(a * 512.0f)));  // subnormal step 2^-9
  const uint32_t m = u & 0x7fffffffu;
  const uint32_t rounded = m + 0x7ffffu + ((m >> 20) & 1u);  // RNE at 3 mantissa bits
  return uint8_t(sign | uint8_t((rounded >> 20) - (120u << 3)));
}

// e2m1 code of x, round to nearest even, saturating at 6 (thresholds between the 8 magnitudes;
// a tie goes to the even code).
inline uint8_t e2m1_rne(float x) noexcept {
  const float a = std::fabs(x);
  const uint8_t magnitude = a <= 0.25f   ? 0
                            : a < 0.75f  ? 1
                            : a <= 1.25f ? 2
                            : a < 1.75f  ? 3
                            : a <= 2.5f  ? 4
                            : a < 3.5f   ? 5
                            : a <= 5.0f  ? 6
                                         : 7;
  return uint8_t((std::signbit(x) ? 8 : 0) | magnitude);
}

// The shared shape of act_quant and fp4_act_quant for one block: s = the ceiling power of two of
// max(amax, amax_floor) / max_value, codes = encode(clamp(x / s, ±max_value)); returns s's ue8m0
// code.
template <class Encode>
inline uint8_t quantize_block(const float* x, int64_t n, float amax_floor, float max_value,
                              Encode encode, uint8_t* codes) noexcept {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const int e = ceil_pow2_exponent(std::max(amax, amax_floor), 1.0f / max_value);
  const float inv_s = pow2(-e);  // x / s is exact: s is a power of two
  for (int64_t i = 0; i < n; ++i)
    codes[i] = encode(std::clamp(x[i] * inv_s, -max_value, max_value));
  return uint8_t(e + 127);
}

// One block of act_quant (FP8): e4m3 codes of x/s and the ue8m0 code of s.
inline uint8_t quantize_fp8_block(const float* x, int64_t n, uint8_t* codes) noexcept {
  return quantize_block(x, n, kAmaxFloorFp8, 448.0f, e4m3_rne, codes);
}

// One block of fp4_act_quant: e2m1 codes (nibbles) of x/s and the ue8m0 code of s.
inline uint8_t quantize_fp4_block(const float* x, int64_t n, uint8_t* nibbles) noexcept {
  return quantize_block(x, n, kAmaxFloorFp4, 6.0f, e2m1_rne, nibbles);
}

inline int64_t next_pow2(int64_t n) noexcept {
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

// The official rotate_activation for one vector of c values: zero-pad to the next power of two,
// unnormalised Sylvester-order butterflies in fp32, × fl32(c^-0.5), keep the first c. (Not
// orthonormal when c is not a power of two; that is what the official code computes.)
inline void hadamard_rotate(const float* x, int64_t c, float* out) {
  const int64_t p = next_pow2(c);
  thread_local std::vector<float> scratch;
  if (scratch.size() < size_t(p)) scratch.resize(size_t(p));
  float* v = scratch.data();
  for (int64_t i = 0; i < p; ++i) v[i] = i < c ? x[i] : 0.0f;
  for (int64_t h = 1; h < p; h *= 2)
    for (int64_t i = 0; i < p; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
  const float scale = float(1.0 / std::sqrt(double(c)));
  for (int64_t i = 0; i < c; ++i) out[i] = v[i] * scale;
}

}  // namespace quant

enum class CacheFormat : uint8_t { kF32, kBF16, kFp8Rope, kFp4 };

struct EntryCodec {
  CacheFormat format = CacheFormat::kF32;
  int64_t dim = 0;
  int64_t rope_dim = 0;  // kFp8Rope: the trailing rope values kept as bf16
  bool rotate = false;   // kFp4: store the Hadamard rotation of the key

  int64_t nope_dim() const noexcept { return dim - rope_dim; }
  int64_t fp8_scales() const noexcept {
    return (nope_dim() + quant::kFp8Block - 1) / quant::kFp8Block;
  }
  int64_t fp4_scales() const noexcept { return (dim + quant::kFp4Block - 1) / quant::kFp4Block; }
  // Byte offset of the bf16 rope values in a kFp8Rope entry (nope codes + scales, made even).
  int64_t rope_offset() const noexcept { return (nope_dim() + fp8_scales() + 1) / 2 * 2; }

  size_t bytes() const noexcept {
    switch (format) {
      case CacheFormat::kF32:
        return size_t(dim) * 4;
      case CacheFormat::kBF16:
        return size_t(dim) * 2;
      case CacheFormat::kFp8Rope:
        return size_t(rope_offset() + 2 * rope_dim);
      case CacheFormat::kFp4:
        return size_t((dim + 1) / 2 + fp4_scales());
    }
    return 0;
  }

  // Stores `in` (dim values) in this format: the official fake-quantisation for the packed ones.
  void encode(const float* in, uint8_t* out) const {
    switch (format) {
      case CacheFormat::kF32:
        std::memcpy(out, in, size_t(dim) * 4);
        return;
      case CacheFormat::kBF16:
        for (int64_t i = 0; i < dim; ++i) store_bf16(out + 2 * i, float_to_bf16(in[i]));
        return;
      case CacheFormat::kFp8Rope: {
        const int64_t n = nope_dim();
        for (int64_t b = 0; b < fp8_scales(); ++b) {
          const int64_t i0 = b * quant::kFp8Block, len = std::min(quant::kFp8Block, n - i0);
          out[n + b] = quant::quantize_fp8_block(in + i0, len, out + i0);
        }
        if (rope_offset() > n + fp8_scales()) out[n + fp8_scales()] = 0;  // padding
        for (int64_t i = 0; i < rope_dim; ++i)
          store_bf16(out + rope_offset() + 2 * i, float_to_bf16(in[n + i]));
        return;
      }
      case CacheFormat::kFp4: {
        thread_local std::vector<float> rotated;
        const float* x = in;
        if (rotate) {
          // The official rotate_activation hands FP4 its output in bf16: round the same way.
          rotated.resize(size_t(dim));
          quant::hadamard_rotate(in, dim, rotated.data());
          for (float& v : rotated) v = bf16_to_float(float_to_bf16(v));
          x = rotated.data();
        }
        uint8_t nibbles[quant::kFp4Block];
        const int64_t codes = (dim + 1) / 2;
        std::memset(out, 0, size_t(codes));
        for (int64_t b = 0; b < fp4_scales(); ++b) {
          const int64_t i0 = b * quant::kFp4Block, len = std::min(quant::kFp4Block, dim - i0);
          out[codes + b] = quant::quantize_fp4_block(x + i0, len, nibbles);
          for (int64_t i = 0; i < len; ++i)
            out[(i0 + i) / 2] |= uint8_t(nibbles[i] << (((i0 + i) & 1) * 4));
        }
        return;
      }
    }
  }

  void decode(const uint8_t* in, float* out) const {
    switch (format) {
      case CacheFormat::kF32:
        std::memcpy(out, in, size_t(dim) * 4);
        return;
      case CacheFormat::kBF16:
        for (int64_t i = 0; i < dim; ++i) out[i] = bf16_to_float(load_bf16(in + 2 * i));
        return;
      case CacheFormat::kFp8Rope: {
        const int64_t n = nope_dim();
        for (int64_t b = 0; b < fp8_scales(); ++b) {
          const float s = ue8m0_to_float(in[n + b]);
          const int64_t i0 = b * quant::kFp8Block, i1 = std::min(n, i0 + quant::kFp8Block);
          for (int64_t i = i0; i < i1; ++i) out[i] = fp8_e4m3_to_float(in[i]) * s;
        }
        for (int64_t i = 0; i < rope_dim; ++i)
          out[n + i] = bf16_to_float(load_bf16(in + rope_offset() + 2 * i));
        return;
      }
      case CacheFormat::kFp4: {
        // A byte holds two codes: one table lookup gives both values.
        struct PairTable {
          float v[256][2];
          PairTable() {
            for (int b = 0; b < 256; ++b)
              v[b][0] = fp4_e2m1_to_float(uint8_t(b & 0xf)),
              v[b][1] = fp4_e2m1_to_float(uint8_t(b >> 4));
          }
        };
        static const PairTable table;
        const int64_t codes = (dim + 1) / 2;
        for (int64_t b = 0; b < fp4_scales(); ++b) {
          const float s = ue8m0_to_float(in[codes + b]);
          const int64_t i0 = b * quant::kFp4Block, i1 = std::min(dim, i0 + quant::kFp4Block);
          int64_t i = i0;
          for (; i + 1 < i1; i += 2) {
            const float* pair = table.v[in[i / 2]];
            out[i] = pair[0] * s;
            out[i + 1] = pair[1] * s;
          }
          if (i < i1) out[i] = fp4_e2m1_packed_at(in, size_t(i)) * s;
        }
        return;
      }
    }
  }

  // The values a round trip through this format gives (the cache's view of `x`), in place. For
  // a rotating kFp4 codec these are the rotated values.
  void fake_quantize(float* x) const {
    if (format == CacheFormat::kF32) return;
    thread_local std::vector<uint8_t> buf;
    buf.resize(bytes());
    encode(x, buf.data());
    decode(buf.data(), x);
  }

 private:
  static void store_bf16(uint8_t* p, uint16_t v) noexcept { std::memcpy(p, &v, 2); }
  static uint16_t load_bf16(const uint8_t* p) noexcept {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
  }
};

}  // namespace dsv4
