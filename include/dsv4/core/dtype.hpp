// Numeric formats: element types of checkpoints and caches, and exact codecs for the small floats.
//
//   bf16       IEEE-like, 8 exponent / 7 mantissa bits, bias 127, inf + NaN
//   fp16       IEEE binary16, 5 / 10, bias 15, inf + NaN
//   fp8 e4m3   OCP e4m3fn: 4 / 3, bias 7, max 448, no infinities, NaN = 0x7f / 0xff
//   fp8 e5m2   OCP e5m2: 5 / 2, bias 15, inf + NaN (IEEE style), max 57344
//   ue8m0      unsigned power-of-two scale 2^(bits-127), 0xff = NaN, no zero
//   fp4 e2m1   2 / 1, bias 1: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and negatives; packed two per byte,
//              the even element in the low nibble
//
// Decoding is exact. Encoding rounds to nearest, ties to even. Overflow policy:
//   bf16, fp16           IEEE: values at or past max + half an ulp become infinity.
//   e4m3, e5m2, e2m1     saturating (CUDA's __NV_SATFINITE): finite overflow and infinities
//                        become the largest finite value of that sign; NaN stays NaN.
//   e2m1                 has no NaN: NaN encodes to +0 (documented choice; MX leaves it open).
//   ue8m0                nearest power of two (ties to even exponent), clamped to
//                        [2^-127, 2^127]; NaN, zero and negatives encode to 0xff (NaN).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>

namespace dsv4 {

// Element types that can appear in a checkpoint. Values are internal (not part of the C ABI).
enum class DType : uint8_t {
  kF64,
  kF32,
  kF16,
  kBF16,
  kF8E4M3,
  kF8E5M2,
  kF8E8M0,
  kF4E2M1,
  kI64,
  kI32,
  kI16,
  kI8,
  kU64,
  kU32,
  kU16,
  kU8,
  kBool,
};

// Bits per element; F4 is 4 (two elements per byte).
constexpr int dtype_bits(DType t) noexcept {
  switch (t) {
    case DType::kF64:
    case DType::kI64:
    case DType::kU64:
      return 64;
    case DType::kF32:
    case DType::kI32:
    case DType::kU32:
      return 32;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
    case DType::kU16:
      return 16;
    case DType::kF8E4M3:
    case DType::kF8E5M2:
    case DType::kF8E8M0:
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
      return 8;
    case DType::kF4E2M1:
      return 4;
  }
  return 0;
}

// Safetensors spelling ("BF16", "F8_E4M3", "F4", ...).
std::string_view dtype_name(DType t) noexcept;
// Parses a safetensors dtype string; false when unknown.
bool parse_dtype(std::string_view name, DType* out) noexcept;

namespace detail {

enum class NanStyle { kIeee, kAllOnes, kNone };
enum class OverflowStyle { kInfinity, kSaturate };

// A sign + exponent + mantissa minifloat, described by its field widths.
struct MinifloatSpec {
  int exp_bits;
  int man_bits;
  int bias;
  NanStyle nan;
  OverflowStyle overflow;

  constexpr int max_exp_field() const { return (1 << exp_bits) - 1; }
  constexpr uint32_t sign_bit() const { return 1u << (exp_bits + man_bits); }
  // Largest finite magnitude's exponent field and mantissa field.
  constexpr int max_finite_exp_field() const {
    return nan == NanStyle::kIeee ? max_exp_field() - 1 : max_exp_field();
  }
  constexpr int max_finite_man_field() const {
    return nan == NanStyle::kAllOnes ? (1 << man_bits) - 2 : (1 << man_bits) - 1;
  }
  constexpr uint32_t nan_code() const {
    return nan == NanStyle::kIeee
               ? (uint32_t(max_exp_field()) << man_bits) | (1u << (man_bits - 1))
               : (uint32_t(max_exp_field()) << man_bits) | ((1u << man_bits) - 1);
  }
};

inline constexpr MinifloatSpec kBf16Spec{8, 7, 127, NanStyle::kIeee, OverflowStyle::kInfinity};
inline constexpr MinifloatSpec kFp16Spec{5, 10, 15, NanStyle::kIeee, OverflowStyle::kInfinity};
inline constexpr MinifloatSpec kE4M3Spec{4, 3, 7, NanStyle::kAllOnes, OverflowStyle::kSaturate};
inline constexpr MinifloatSpec kE5M2Spec{5, 2, 15, NanStyle::kIeee, OverflowStyle::kSaturate};
inline constexpr MinifloatSpec kE2M1Spec{2, 1, 1, NanStyle::kNone, OverflowStyle::kSaturate};

inline double minifloat_decode(uint32_t code, const MinifloatSpec& s) {
  const bool negative = (code & s.sign_bit()) != 0;
  const int e = int((code >> s.man_bits) & uint32_t(s.max_exp_field()));
  const uint32_t m = code & ((1u << s.man_bits) - 1);
  double magnitude;
  if (s.nan == NanStyle::kIeee && e == s.max_exp_field()) {
    magnitude =
        m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (s.nan == NanStyle::kAllOnes && e == s.max_exp_field() && m == (1u << s.man_bits) - 1) {
    magnitude = std::numeric_limits<double>::quiet_NaN();
  } else if (e == 0) {
    magnitude = std::ldexp(double(m), 1 - s.bias - s.man_bits);
  } else {
    magnitude = std::ldexp(double((1u << s.man_bits) | m), e - s.bias - s.man_bits);
  }
  return negative ? -magnitude : magnitude;
}

inline double minifloat_max(const MinifloatSpec& s) {
  return std::ldexp(double((1u << s.man_bits) | uint32_t(s.max_finite_man_field())),
                    s.max_finite_exp_field() - s.bias - s.man_bits);
}

inline uint32_t minifloat_encode(double x, const MinifloatSpec& s) {
  const uint32_t sign = std::signbit(x) ? s.sign_bit() : 0u;
  const uint32_t max_code =
      (uint32_t(s.max_finite_exp_field()) << s.man_bits) | uint32_t(s.max_finite_man_field());
  if (std::isnan(x)) return s.nan == NanStyle::kNone ? 0u : s.nan_code();
  const double a = std::fabs(x);
  const bool to_infinity = s.overflow == OverflowStyle::kInfinity;
  const uint32_t inf_code = uint32_t(s.max_exp_field()) << s.man_bits;
  if (std::isinf(a)) return sign | (to_infinity ? inf_code : max_code);
  if (a == 0.0) return sign;
  int k = 0;
  std::frexp(a, &k);                                 // a = f * 2^k, f in [0.5, 1)
  const int exponent = std::max(k - 1, 1 - s.bias);  // subnormals share the minimum exponent
  const double quantum = std::ldexp(1.0, exponent - s.man_bits);
  const double rounded = std::nearbyint(a / quantum) * quantum;  // ties to even
  if (rounded > minifloat_max(s)) return sign | (to_infinity ? inf_code : max_code);
  if (rounded == 0.0) return sign;
  std::frexp(rounded, &k);
  const int e_unbiased = k - 1;
  if (e_unbiased < 1 - s.bias) {  // subnormal
    return sign | uint32_t(std::ldexp(rounded, s.bias - 1 + s.man_bits));
  }
  const uint32_t mantissa =
      uint32_t(std::ldexp(rounded, s.man_bits - e_unbiased)) - (1u << s.man_bits);
  return sign | (uint32_t(e_unbiased + s.bias) << s.man_bits) | mantissa;
}

template <MinifloatSpec const& S>
struct ByteDecodeTable {
  float values[256];
  ByteDecodeTable() {
    for (uint32_t c = 0; c < 256; ++c) values[c] = float(minifloat_decode(c, S));
  }
};

}  // namespace detail

// ---- bf16 ----
namespace detail {
// std::bit_cast where the library has it; a memcpy where it does not (the CUDA TUs build as C++17).
template <class To, class From>
inline To bits_as(const From& from) noexcept {
#if defined(__cpp_lib_bit_cast)
  return std::bit_cast<To>(from);
#else
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
#endif
}
}  // namespace detail

inline float bf16_to_float(uint16_t bits) noexcept {
  return detail::bits_as<float>(uint32_t(bits) << 16);
}
// Round-to-nearest-even on the raw bits; NaN stays a quiet NaN with the same sign.
inline uint16_t float_to_bf16(float x) noexcept {
  const uint32_t u = detail::bits_as<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  const uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
  return uint16_t((u + rounding_bias) >> 16);
}

// ---- fp16 ----
inline float fp16_to_float(uint16_t bits) noexcept {
  return float(detail::minifloat_decode(bits, detail::kFp16Spec));
}
inline uint16_t float_to_fp16(float x) noexcept {
  return uint16_t(detail::minifloat_encode(x, detail::kFp16Spec));
}

// ---- fp8 e4m3 (OCP e4m3fn) ----
inline float fp8_e4m3_to_float(uint8_t bits) noexcept {
  static const detail::ByteDecodeTable<detail::kE4M3Spec> table;
  return table.values[bits];
}
inline uint8_t float_to_fp8_e4m3(float x) noexcept {
  return uint8_t(detail::minifloat_encode(x, detail::kE4M3Spec));
}
inline constexpr float kFp8E4M3Max = 448.0f;

// ---- fp8 e5m2 ----
inline float fp8_e5m2_to_float(uint8_t bits) noexcept {
  static const detail::ByteDecodeTable<detail::kE5M2Spec> table;
  return table.values[bits];
}
inline uint8_t float_to_fp8_e5m2(float x) noexcept {
  return uint8_t(detail::minifloat_encode(x, detail::kE5M2Spec));
}
inline constexpr float kFp8E5M2Max = 57344.0f;

// ---- ue8m0 power-of-two scale ----
// 2^(bits − 127), built from the bits (codes 1..254 are normal floats, 0 is the subnormal
// 2^-127): no libm call, since decoders call this once per block.
inline float ue8m0_to_float(uint8_t bits) noexcept {
  if (bits == 0xff) return std::numeric_limits<float>::quiet_NaN();
  return detail::bits_as<float>(bits == 0 ? 0x00400000u : uint32_t(bits) << 23);
}
inline uint8_t float_to_ue8m0(float x) noexcept {
  if (!(x > 0.0f)) return 0xff;  // NaN, zero and negatives have no encoding
  if (std::isinf(x)) return 0xfe;
  int k = 0;
  const double f = std::frexp(double(x), &k);  // x = f * 2^k, f in [0.5, 1)
  int e = k - 1;                               // x = (2f) * 2^e, 2f in [1, 2)
  const double m = 2.0 * f;
  if (m > 1.5 || (m == 1.5 && ((e + 127) & 1))) ++e;  // nearest power of two, ties to even code
  if (e < -127) e = -127;
  if (e > 127) e = 127;
  return uint8_t(e + 127);
}

// ---- fp4 e2m1 ----
inline float fp4_e2m1_to_float(uint8_t nibble) noexcept {
  static constexpr float kValues[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                        -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  return kValues[nibble & 0xf];
}
inline uint8_t float_to_fp4_e2m1(float x) noexcept {
  return uint8_t(detail::minifloat_encode(x, detail::kE2M1Spec));
}
inline constexpr float kFp4E2M1Max = 6.0f;
// Element i of a packed FP4 array (two per byte, even index in the low nibble).
inline float fp4_e2m1_packed_at(const uint8_t* packed, size_t i) noexcept {
  const uint8_t byte = packed[i / 2];
  return fp4_e2m1_to_float((i & 1) ? uint8_t(byte >> 4) : uint8_t(byte & 0xf));
}

}  // namespace dsv4
