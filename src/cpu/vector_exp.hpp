// exp over a vector of floats for the softmax of the CPU kernels, written over an xsimd
// architecture tag and instantiated per ISA with the kernels that use it.
//
// Cephes' expf: n = round(x·log2 e), r = x − n·ln 2 with ln 2 in two parts (the first exact in
// few bits, so n·ln2_hi is exact), exp(r) by a degree-5 polynomial on |r| ≤ ln 2 / 2, times 2^n
// put together from its bits. Within 2 ulp of std::exp over [−87.3, 88.3] (tested); the
// scalar std::exp it replaces had taken about a tenth of the attention kernel.
#pragma once

#include <cstdint>
#include <limits>
#include <xsimd/xsimd.hpp>

namespace dsv4::cpu::detail {

// exp(x) lane by lane: +0 below −87.3365 (where exp falls under the smallest normal float, and for
// −inf), +inf above 88.3763, NaN kept. The softmax's arguments are x − max ≤ 0, so its zeros are
// the ones std::exp would round to subnormals or zero.
template <class Arch>
inline xsimd::batch<float, Arch> vector_exp(xsimd::batch<float, Arch> x) noexcept {
  using Batch = xsimd::batch<float, Arch>;
  using Ints = xsimd::batch<int32_t, Arch>;
  const Batch lowest(-87.3365478515625f), highest(88.3762626647949f);
  // In range, x itself; outside, the bound (a NaN is replaced below, whatever min/max give it).
  const Batch clamped = xsimd::select(x < lowest, lowest, xsimd::select(x > highest, highest, x));
  const Batch n = xsimd::nearbyint(clamped * Batch(1.44269504088896341f));
  Batch r = xsimd::fnma(n, Batch(0.693359375f), clamped);
  r = xsimd::fnma(n, Batch(-2.12194440e-4f), r);
  Batch p(1.9875691500e-4f);
  p = xsimd::fma(p, r, Batch(1.3981999507e-3f));
  p = xsimd::fma(p, r, Batch(8.3334519073e-3f));
  p = xsimd::fma(p, r, Batch(4.1665795894e-2f));
  p = xsimd::fma(p, r, Batch(1.6666665459e-1f));
  p = xsimd::fma(p, r, Batch(5.0000001201e-1f));
  p = xsimd::fma(p, r * r, r + Batch(1.0f));
  // 2^n for n in [−126, 127]: the exponent field n + 127, mantissa zero.
  const Ints field = (xsimd::to_int(n) + Ints(127)) << 23;
  const Batch result = p * xsimd::bitwise_cast<Batch>(field);
  const Batch under = xsimd::select(x < lowest, Batch(0.0f), result);
  const Batch over =
      xsimd::select(x > highest, Batch(std::numeric_limits<float>::infinity()), under);
  return xsimd::select(xsimd::isnan(x), x, over);
}

}  // namespace dsv4::cpu::detail
