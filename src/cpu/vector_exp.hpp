// exp over a vector of floats for the softmax of the CPU kernels, written over an xsimd
// architecture tag and instantiated per ISA with the kernels that use it.
//
// Cephes' expf: n = round(x·log2 e), r = x − n·ln 2 with ln 2 in two parts (the first exact in
// few bits, so n·ln2_hi is exact), exp(r) by a degree-5 polynomial on |r| ≤ ln 2 / 2, times 2^n
// put together from its bits. Within 1 ulp of std::exp over [−87.3, 88.3] (2 tested); the
// scalar std::exp it replaces had taken about a tenth of the attention kernel.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>
#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace dsv4::cpu::detail {

// On AVX-512 the zero-masked intrinsics with every lane kept: GCC 12 reports the plain forms'
// undefined pass-through operand (which xsimd's rounding, conversion and shift use) as
// uninitialised in the sanitized build, -Werror.
template <class Arch>
constexpr bool kAvx512Arch = std::is_base_of_v<xsimd::avx512f, Arch>;

// x rounded to the nearest integer (ties to even).
template <class Arch>
inline xsimd::batch<float, Arch> round_to_integer(xsimd::batch<float, Arch> x) noexcept {
#if defined(__AVX512F__)
  if constexpr (kAvx512Arch<Arch>)
    return _mm512_maskz_roundscale_ps(__mmask16(0xFFFF), x,
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#endif
  return xsimd::nearbyint(x);
}

// 2^n for integers n in [−126, 127]: the exponent field n + 127, mantissa zero.
template <class Arch>
inline xsimd::batch<float, Arch> two_to_the(xsimd::batch<float, Arch> n) noexcept {
#if defined(__AVX512F__)
  if constexpr (kAvx512Arch<Arch>) {
    constexpr __mmask16 kAll = 0xFFFF;
    const __m512i biased =
        _mm512_add_epi32(_mm512_maskz_cvttps_epi32(kAll, n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, biased, 23));
  }
#endif
  using Ints = xsimd::batch<int32_t, Arch>;
  return xsimd::bitwise_cast<xsimd::batch<float, Arch>>((xsimd::to_int(n) + Ints(127)) << 23);
}

// exp(x) lane by lane: +0 below −87.3365 (where exp falls under the smallest normal float, and for
// −inf), +inf above 88.3763, NaN kept. The softmax's arguments are x − max ≤ 0, so its zeros are
// the ones std::exp would round to subnormals or zero.
template <class Arch>
inline xsimd::batch<float, Arch> vector_exp(xsimd::batch<float, Arch> x) noexcept {
  using Batch = xsimd::batch<float, Arch>;
  const Batch lowest(-87.3365478515625f), highest(88.3762626647949f);
  // In range, x itself; outside, the bound (a NaN is replaced below, whatever min/max give it).
  const Batch clamped = xsimd::select(x < lowest, lowest, xsimd::select(x > highest, highest, x));
  const Batch n = round_to_integer(clamped * Batch(1.44269504088896341f));
  Batch r = xsimd::fnma(n, Batch(0.693359375f), clamped);
  r = xsimd::fnma(n, Batch(-2.12194440e-4f), r);
  Batch p(1.9875691500e-4f);
  p = xsimd::fma(p, r, Batch(1.3981999507e-3f));
  p = xsimd::fma(p, r, Batch(8.3334519073e-3f));
  p = xsimd::fma(p, r, Batch(4.1665795894e-2f));
  p = xsimd::fma(p, r, Batch(1.6666665459e-1f));
  p = xsimd::fma(p, r, Batch(5.0000001201e-1f));
  p = xsimd::fma(p, r * r, r + Batch(1.0f));
  const Batch result = p * two_to_the(n);
  const Batch under = xsimd::select(x < lowest, Batch(0.0f), result);
  const Batch over =
      xsimd::select(x > highest, Batch(std::numeric_limits<float>::infinity()), under);
  return xsimd::select(xsimd::isnan(x), x, over);
}

}  // namespace dsv4::cpu::detail
