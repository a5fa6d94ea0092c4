// The double-accumulated dot product of the official numerics (the reference recipe's "exact sum
// rounded once"), compiled once per instruction set by the kernels_<isa>.cpp files. Products of
// fp32 values are exact in double; the lanes' partial sums are added in a different order than a
// sequential loop, which does not matter where the recipe needs exactness: FP8/FP4 block sums
// are exact in double in any order, and bf16 × bf16 or fp32 × bf16 sums stay within an ulp of
// double, 2^-29 of an fp32 ulp, before their single rounding.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "cpu_kernels.hpp"

namespace dsv4::cpu::detail {
// Internal linkage: each kernels_<isa>.cpp compiles its own copy with its own instruction set
// (an inline function with external linkage would be merged into one copy by the linker).
namespace {

double dot_f64(const float* a, const float* b, int64_t n) noexcept {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// The same against n bf16 values stored little-endian at `w` (any alignment).
double dot_bf16_f64(const float* a, const uint8_t* w, int64_t n) noexcept {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    uint16_t half;
    std::memcpy(&half, w + 2 * i, 2);
    const uint32_t bits = uint32_t(half) << 16;
    float value;
    std::memcpy(&value, &bits, 4);
    s += double(a[i]) * double(value);
  }
  return s;
}

// e4m3 code -> value, branch-free and in integer masks so that the loops below vectorise (NaN
// codes are refused at load and never reach a kernel).
inline float e4m3_value(uint32_t code) noexcept {
  const uint32_t e = (code >> 3) & 0xF, m = code & 7;
  const uint32_t normal = ((e + 120) << 23) | (m << 20);
  const uint32_t subnormal = std::bit_cast<uint32_t>(float(int32_t(m)) * 0x1p-9f);
  const uint32_t is_normal = 0u - uint32_t(e != 0);
  return std::bit_cast<float>((normal & is_normal) | (subnormal & ~is_normal) |
                              ((code & 0x80) << 24));
}

// e2m1 nibble -> value (0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives), in integer masks.
inline float e2m1_value(uint32_t nibble) noexcept {
  const uint32_t e = (nibble >> 1) & 3, m = nibble & 1;
  const uint32_t normal = ((e + 126) << 23) | (m << 22);
  const uint32_t subnormal = std::bit_cast<uint32_t>(0.5f * float(int32_t(m)));
  const uint32_t is_normal = 0u - uint32_t(e != 0);
  return std::bit_cast<float>((normal & is_normal) | (subnormal & ~is_normal) |
                              ((nibble & 8) << 28));
}

// The code values of k e4m3 bytes.
void fp8_values(const uint8_t* codes, int64_t k, float* out) noexcept {
#pragma omp simd
  for (int64_t i = 0; i < k; ++i) out[i] = e4m3_value(codes[i]);
}

// The code values of k e2m1 nibbles, two per byte, the even element in the low nibble (k even):
// one 8-byte table entry per byte (the interleaved stores do not vectorise).
void fp4_values(const uint8_t* packed, int64_t k, float* out) noexcept {
  static const auto pairs = [] {
    struct Table {
      float v[256][2];
    } t{};
    for (uint32_t b = 0; b < 256; ++b) {
      t.v[b][0] = e2m1_value(b & 0xFu);
      t.v[b][1] = e2m1_value(b >> 4);
    }
    return t;
  }();
  for (int64_t j = 0; j < k / 2; ++j) std::memcpy(out + 2 * j, pairs.v[packed[j]], 8);
}

// Per `block`-wide block of k, Σ aq_i · w_i in double. For code values (e4m3 × e4m3 or
// e4m3 × e2m1) every product is exact in fp32 and every block sum exact in double, in any order.
void block_sums(const float* aq, const float* w, int64_t k, int64_t block, double* sums) noexcept {
  for (int64_t k0 = 0, b = 0; k0 < k; k0 += block, ++b) {
    const int64_t n = k - k0 < block ? k - k0 : block;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += double(aq[k0 + i] * w[k0 + i]);
    sums[b] = s;
  }
}

// Decode-shaped (one activation row) FP8 block sums, decoding the codes on the fly:
// Σ aq_i · e4m3(codes_i) per 128-wide block, exact in double.
void fp8_block_sums(const float* aq, const uint8_t* codes, int64_t k, double* sums) noexcept {
  for (int64_t k0 = 0, b = 0; k0 < k; k0 += 128, ++b) {
    const int64_t n = k - k0 < 128 ? k - k0 : 128;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += double(aq[k0 + i] * e4m3_value(codes[k0 + i]));
    sums[b] = s;
  }
}

// The same for FP4 (32-wide blocks, k even). The activation row comes split into its even and
// odd elements, so that each byte's two nibbles meet contiguous operands (the sum is exact, its
// order free).
void fp4_block_sums(const float* aq_even, const float* aq_odd, const uint8_t* packed, int64_t k,
                    double* sums) noexcept {
  for (int64_t j0 = 0, b = 0; 2 * j0 < k; j0 += 16, ++b) {
    const int64_t n = k / 2 - j0 < 16 ? k / 2 - j0 : 16;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t byte = packed[j0 + j];
      s += double(aq_even[j0 + j] * e2m1_value(byte & 0xFu)) +
           double(aq_odd[j0 + j] * e2m1_value(byte >> 4));
    }
    sums[b] = s;
  }
}

// This instruction set's table (the functions above are this file's own copies).
OfficialKernels official_kernel_table() {
  return {&dot_f64,    &dot_bf16_f64,   &fp8_values,    &fp4_values,
          &block_sums, &fp8_block_sums, &fp4_block_sums};
}

}  // namespace
}  // namespace dsv4::cpu::detail
