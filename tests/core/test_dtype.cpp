// Every bit pattern of the 8- and 4-bit formats and a dense sweep of bf16/fp16, checked against
// arithmetic written independently here (field formulas, brute-force nearest search, _Float16).
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "dsv4/core/dtype.hpp"
#include "dsv4/core/tensor_view.hpp"

namespace {

// value = (-1)^s * 2^(e - bias) * (1 + m / 2^M), subnormal when e == 0 — written out by hand.
double field_value(unsigned s, unsigned e, unsigned m, int man_bits, int bias) {
  const double frac = double(m) / double(1u << man_bits);
  const double mag =
      e == 0 ? std::pow(2.0, 1 - bias) * frac : std::pow(2.0, int(e) - bias) * (1.0 + frac);
  return s ? -mag : mag;
}

bool same_value(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

// All finite codes of an 8-bit-or-smaller format, with their values.
struct Code {
  uint32_t bits;
  double value;
};

// Nearest representable value by brute force, ties to the even code (mantissa LSB 0).
uint32_t brute_force_nearest(double x, const std::vector<Code>& finite) {
  uint32_t best = 0;
  double best_err = INFINITY;
  for (const Code& c : finite) {
    const double err = std::fabs(c.value - x);
    if (err < best_err || (err == best_err && (c.bits & 1) == 0 && (best & 1) == 1) ||
        (err == best_err && c.value == 0.0 && std::signbit(c.value) == std::signbit(x))) {
      best = c.bits;
      best_err = err;
    }
  }
  return best;
}

}  // namespace

TEST_CASE("fp8 e4m3: every code decodes to its field value", "[dtype][fp8]") {
  int n_nan = 0;
  for (unsigned c = 0; c < 256; ++c) {
    const unsigned s = c >> 7, e = (c >> 3) & 0xf, m = c & 7;
    const double expected = (e == 15 && m == 7) ? NAN : field_value(s, e, m, 3, 7);
    n_nan += std::isnan(expected);
    INFO("code " << c);
    CHECK(same_value(dsv4::fp8_e4m3_to_float(uint8_t(c)), expected));
  }
  CHECK(n_nan == 2);  // 0x7f and 0xff only
  CHECK(dsv4::fp8_e4m3_to_float(0x7e) == 448.0f);
  CHECK(dsv4::fp8_e4m3_to_float(0x01) == std::ldexp(1.0f, -9));
}

TEST_CASE("fp8 e4m3: encoding rounds to nearest even and saturates", "[dtype][fp8]") {
  std::vector<Code> finite;
  for (unsigned c = 0; c < 256; ++c)
    if ((c & 0x7f) != 0x7f) finite.push_back({c, dsv4::fp8_e4m3_to_float(uint8_t(c))});
  for (unsigned c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    INFO("code " << c);
    CHECK(dsv4::float_to_fp8_e4m3(dsv4::fp8_e4m3_to_float(uint8_t(c))) == c);  // exact round trip
  }
  // Midpoints and quarter points between neighbours, both signs.
  for (const Code& a : finite) {
    for (const Code& b : finite) {
      if (!(b.value > a.value) || std::signbit(a.value) != std::signbit(b.value)) continue;
      bool adjacent = true;
      for (const Code& c : finite) adjacent &= !(c.value > a.value && c.value < b.value);
      if (!adjacent) continue;
      for (double t : {0.25, 0.5, 0.75}) {
        const float x = float(a.value + (b.value - a.value) * t);
        INFO("x = " << x);
        CHECK(dsv4::float_to_fp8_e4m3(x) == brute_force_nearest(x, finite));
      }
    }
  }
  CHECK(dsv4::float_to_fp8_e4m3(1000.0f) == 0x7e);
  CHECK(dsv4::float_to_fp8_e4m3(-1000.0f) == 0xfe);
  CHECK(dsv4::float_to_fp8_e4m3(INFINITY) == 0x7e);
  CHECK(dsv4::float_to_fp8_e4m3(464.0f) == 0x7e);  // between 448 and the (absent) 480: saturates
  CHECK((dsv4::float_to_fp8_e4m3(NAN) & 0x7f) == 0x7f);
}

TEST_CASE("fp8 e5m2: every code decodes and encodes", "[dtype][fp8]") {
  std::vector<Code> finite;
  for (unsigned c = 0; c < 256; ++c) {
    const unsigned s = c >> 7, e = (c >> 2) & 0x1f, m = c & 3;
    double expected = field_value(s, e, m, 2, 15);
    if (e == 31) expected = m == 0 ? (s ? -INFINITY : INFINITY) : NAN;
    INFO("code " << c);
    CHECK(same_value(dsv4::fp8_e5m2_to_float(uint8_t(c)), expected));
    if (e != 31) {
      finite.push_back({c, expected});
      CHECK(dsv4::float_to_fp8_e5m2(float(expected)) == c);
    }
  }
  for (float x : {1.1f, 1.125f, 1.375f, 3.0e-6f, 7.0e-5f, 40000.0f, 57000.0f, -2.6f})
    CHECK(dsv4::float_to_fp8_e5m2(x) == brute_force_nearest(x, finite));
  CHECK(dsv4::float_to_fp8_e5m2(1e9f) == 0x7b);  // saturates to 57344
  CHECK(dsv4::fp8_e5m2_to_float(0x7b) == 57344.0f);
}

TEST_CASE("ue8m0: every code is a power of two, 0xff is NaN, ties go to the even code",
          "[dtype][ue8m0]") {
  for (unsigned c = 0; c < 255; ++c) {
    INFO("code " << c);
    CHECK(dsv4::ue8m0_to_float(uint8_t(c)) == float(std::pow(2.0, int(c) - 127)));
    CHECK(dsv4::float_to_ue8m0(dsv4::ue8m0_to_float(uint8_t(c))) == c);
  }
  CHECK(std::isnan(dsv4::ue8m0_to_float(0xff)));
  // Ties (1.5 · 2^e, midway between 2^e and 2^(e+1)) go to the even code: 3 to 2 (code 128),
  // 6 to 8 (code 130).
  CHECK(dsv4::float_to_ue8m0(3.0f) == 128);
  CHECK(dsv4::float_to_ue8m0(6.0f) == 130);
  CHECK(dsv4::float_to_ue8m0(1.4f) == 127);  // nearer 1
  CHECK(dsv4::float_to_ue8m0(1.6f) == 128);  // nearer 2
  CHECK(dsv4::float_to_ue8m0(0.0f) == 0xff);
  CHECK(dsv4::float_to_ue8m0(-1.0f) == 0xff);
  CHECK(dsv4::float_to_ue8m0(1e-45f) == 0);  // clamps to 2^-127
}

TEST_CASE("fp4 e2m1: every code, packing order, rounding", "[dtype][fp4]") {
  const double magnitudes[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  std::vector<Code> finite;
  for (unsigned c = 0; c < 16; ++c) {
    const unsigned s = c >> 3, e = (c >> 1) & 3, m = c & 1;
    const double expected = field_value(s, e, m, 1, 1);
    CHECK(expected == (s ? -magnitudes[c & 7] : magnitudes[c & 7]));
    CHECK(same_value(dsv4::fp4_e2m1_to_float(uint8_t(c)), expected));
    CHECK(dsv4::float_to_fp4_e2m1(float(expected)) == c);
    finite.push_back({c, expected});
  }
  for (float x : {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 5.5f, -0.75f, -5.0f, 0.3f})
    CHECK(dsv4::float_to_fp4_e2m1(x) == brute_force_nearest(x, finite));
  CHECK(dsv4::float_to_fp4_e2m1(100.0f) == 0x7);
  CHECK(dsv4::float_to_fp4_e2m1(-INFINITY) == 0xf);
  CHECK(dsv4::float_to_fp4_e2m1(NAN) == 0x0);
  const uint8_t packed[2] = {0x21, 0xf7};  // elements: 0.5, 1, 6, -6
  CHECK(dsv4::fp4_e2m1_packed_at(packed, 0) == 0.5f);
  CHECK(dsv4::fp4_e2m1_packed_at(packed, 1) == 1.0f);
  CHECK(dsv4::fp4_e2m1_packed_at(packed, 2) == 6.0f);
  CHECK(dsv4::fp4_e2m1_packed_at(packed, 3) == -6.0f);
}

TEST_CASE("bf16: every pattern decodes, encoding is nearest-even over a dense sweep",
          "[dtype][bf16]") {
  for (uint32_t c = 0; c < 65536; ++c) {
    const unsigned s = c >> 15, e = (c >> 7) & 0xff, m = c & 0x7f;
    double expected = field_value(s, e, m, 7, 127);
    if (e == 255) expected = m == 0 ? (s ? -INFINITY : INFINITY) : NAN;
    REQUIRE(same_value(dsv4::bf16_to_float(uint16_t(c)), expected));
    if (e != 255) REQUIRE(dsv4::float_to_bf16(float(expected)) == c);
  }
  // Dense sweep: every 97th float bit pattern; the result must be one of the two neighbours, the
  // nearer one, ties to the even code.
  for (uint64_t u = 0; u < (1ull << 32); u += 97) {
    const float x = std::bit_cast<float>(uint32_t(u));
    if (std::isnan(x)) {
      REQUIRE(std::isnan(dsv4::bf16_to_float(dsv4::float_to_bf16(x))));
      continue;
    }
    const uint16_t got = dsv4::float_to_bf16(x);
    const uint16_t lo = uint16_t(uint32_t(u) >> 16);  // truncation toward zero
    const uint16_t hi = uint16_t(lo + 1);
    // Past the largest finite bf16 the next code is infinity, which IEEE rounding reaches from
    // half an ulp above the largest finite value: it stands at 2^128 in the comparison.
    const double vlo = dsv4::bf16_to_float(lo);
    const double vhi = (hi & 0x7fff) == 0x7f80 ? std::copysign(std::ldexp(1.0, 128), double(x))
                                               : double(dsv4::bf16_to_float(hi));
    const double elo = std::fabs(double(x) - vlo), ehi = std::fabs(double(x) - vhi);
    const uint16_t expected = (elo < ehi || (elo == ehi && (lo & 1) == 0)) ? lo : hi;
    if (got != expected) FAIL("bf16 of bits " << u << " got " << got << " expected " << expected);
  }
}

TEST_CASE("fp16: matches the compiler's _Float16 on every pattern and a dense sweep",
          "[dtype][fp16]") {
  for (uint32_t c = 0; c < 65536; ++c) {
    const _Float16 h = std::bit_cast<_Float16>(uint16_t(c));
    REQUIRE(same_value(dsv4::fp16_to_float(uint16_t(c)), double(float(h))));
  }
  for (uint64_t u = 0; u < (1ull << 32); u += 101) {
    const float x = std::bit_cast<float>(uint32_t(u));
    const uint16_t got = dsv4::float_to_fp16(x);
    const uint16_t expected = std::bit_cast<uint16_t>(static_cast<_Float16>(x));
    if (std::isnan(x)) {
      REQUIRE(std::isnan(dsv4::fp16_to_float(got)));
    } else if (got != expected) {
      FAIL("fp16 of bits " << u << " got " << got << " expected " << expected);
    }
  }
}

TEST_CASE("dtype names round-trip and sizes are right", "[dtype]") {
  for (const char* name : {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",
                           "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}) {
    dsv4::DType t{};
    REQUIRE(dsv4::parse_dtype(name, &t));
    CHECK(dsv4::dtype_name(t) == name);
  }
  dsv4::DType t{};
  CHECK_FALSE(dsv4::parse_dtype("F12", &t));
  CHECK(dsv4::dtype_bits(dsv4::DType::kF4E2M1) == 4);
  CHECK(dsv4::dtype_bytes_for(dsv4::DType::kF4E2M1, 3) == -1);
  CHECK(dsv4::dtype_bytes_for(dsv4::DType::kBF16, 3) == 6);
}
