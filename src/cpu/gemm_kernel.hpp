// The GEMM/GEMV kernel over every weight format, written once over an xsimd architecture tag and
// instantiated in one translation unit per ISA (kernels_<isa>.cpp, each with its own compiler
// flags). The Arch tag is part of every symbol, so the per-ISA copies never collide at link time.
//
// C[m, n] = alpha * A[m, k] . W[n, k]^T + beta * C, with W a WeightView in its stored format.
//  - m <= kGemvRows (decode, and the few rows an expert gets in a prefill chunk): every output is
//    a dot product along k; W is streamed from memory exactly once (with software prefetch) and
//    decoded in registers (BF16 by a shift, FP8 through the fp16 converter, FP4 by a 16-entry
//    table permute), block scales applied once per block.
//  - larger m (prefill): W is packed in chunks of kNr rows × kKc inputs (32 KiB, decoded to fp32
//    while packing: dequantise-while-packing), which stay in L1 while every row tile of A is
//    broadcast against them into a kMr × 2-vector register tile.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>
#include <xsimd/xsimd.hpp>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "dsv4/backend/backend.hpp"
#include "parallel_guard.hpp"

namespace dsv4::cpu::detail {

// e4m3 code -> fp16 bits of (value × 2^-8): sign to bit 15, the 7 exponent+mantissa bits to
// bits 7..13. Exact for normal and subnormal codes (fp16 has the range), so the fp16 converter
// does the rest and the 2^8 is folded into the block scale.
inline constexpr float kFp8ViaFp16Factor = 256.0f;

// Calls f.template operator()<N>() for the runtime count n in [1, Max]: tile shapes are template
// arguments (so accumulators live in registers), the edge tiles' sizes are known only at run time.
template <int Max, class F>
void with_count(int64_t n, F&& f) {
  if constexpr (Max > 1) {
    if (n < Max) return with_count<Max - 1>(n, f);
  }
  f.template operator()<Max>();
}

template <class Arch>
struct GemmKernel {
  using Batch = xsimd::batch<float, Arch>;
  static constexpr int64_t kLanes = int64_t(Batch::size);
  static constexpr int64_t kTile = 4;
  // Up to this many activation rows take the dot-product path: its in-register decode beats
  // decoding whole panels for the few rows an expert gets in a prefill chunk (4-row tiles reuse
  // the same 4 weight rows from L1).
  static constexpr int64_t kGemvRows = 16;
  static constexpr bool kAvx512 = std::is_same_v<Arch, xsimd::avx512bw>;
  static constexpr bool kAvx2 = std::is_same_v<Arch, xsimd::avx2>;

  static void store(const GemmArgs& g, int64_t i, int64_t j, float sum) {
    float* c = g.c + i * g.ldc + j;
    *c = g.alpha * sum + (g.beta == 0.0f ? 0.0f : g.beta * *c);
  }

  // ---- decoders: kLanes weights of one row starting at element p ----
  static Batch load_f32(const uint8_t* row, int64_t p) {
    return Batch::load_unaligned(reinterpret_cast<const float*>(row) + p);
  }
  static Batch load_bf16(const uint8_t* row, int64_t p) {
    const uint8_t* src = row + 2 * p;
#if defined(__x86_64__)
    if constexpr (kAvx512) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
      return Batch(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    } else if constexpr (kAvx2) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
      return Batch(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
#endif
    alignas(64) float tmp[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) {
      const uint32_t bits = (uint32_t(src[2 * l]) | uint32_t(src[2 * l + 1]) << 8) << 16;
      std::memcpy(tmp + l, &bits, 4);
    }
    return Batch::load_aligned(tmp);
  }
  // FP8 weights times 2^-8 (see kFp8ViaFp16Factor).
  static Batch load_fp8_scaled(const uint8_t* row, int64_t p) {
    const uint8_t* src = row + p;
#if defined(__x86_64__)
    if constexpr (kAvx512) {
      __m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
      h = _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16(int16_t(0xBF80)));
      return Batch(_mm512_cvtph_ps(h));
    } else if constexpr (kAvx2) {
      __m128i h = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src)));
      h = _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16(int16_t(0xBF80)));
      return Batch(_mm256_cvtph_ps(h));
    }
#endif
    alignas(64) float tmp[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) tmp[l] = fp8_e4m3_to_float(src[l]) / kFp8ViaFp16Factor;
    return Batch::load_aligned(tmp);
  }
  // Two vectors of FP8 weights (times 2^-8) from 2·kLanes codes: on AVX-512 one widening of 32
  // codes to 16 bits serves both halves.
  static void load_fp8_scaled_pair(const uint8_t* src, Batch& w0, Batch& w1) {
#if defined(__x86_64__)
    if constexpr (kAvx512) {
      __m512i h = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
      h = _mm512_and_si512(_mm512_slli_epi16(h, 7), _mm512_set1_epi16(int16_t(0xBF80)));
      w0 = Batch(_mm512_cvtph_ps(_mm512_castsi512_si256(h)));
      w1 = Batch(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)));
      return;
    }
#endif
    w0 = load_fp8_scaled(src, 0);
    w1 = load_fp8_scaled(src, kLanes);
  }
  // FP4: kLanes bytes hold 2·kLanes weights; `lo` gets the even ones, `hi` the odd ones.
  static void load_fp4_pair(const uint8_t* bytes, Batch& lo, Batch& hi) {
#if defined(__x86_64__)
    if constexpr (kAvx512) {
      const __m512 lut = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f,
                                        -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
      const __m512i idx =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes)));
      lo = Batch(_mm512_permutexvar_ps(idx, lut));  // uses the low 4 bits of each index
      hi = Batch(_mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), lut));
      return;
    } else if constexpr (kAvx2) {
      const __m256 magnitude = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
      const __m256i sign_bit = _mm256_set1_epi32(int32_t(0x80000000u));
      const __m256i idx =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes)));
      const __m256i idx_hi = _mm256_srli_epi32(idx, 4);
      // permutevar8x32 uses the low 3 bits (the magnitude); bit 3 is the sign.
      const __m256 lo_mag = _mm256_permutevar8x32_ps(magnitude, idx);
      const __m256 hi_mag = _mm256_permutevar8x32_ps(magnitude, idx_hi);
      lo = Batch(_mm256_xor_ps(
          lo_mag, _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(idx, 28), sign_bit))));
      hi = Batch(_mm256_xor_ps(
          hi_mag, _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(idx_hi, 28), sign_bit))));
      return;
    }
#endif
    alignas(64) float tl[kLanes], th[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) {
      tl[l] = fp4_e2m1_to_float(uint8_t(bytes[l] & 0xf));
      th[l] = fp4_e2m1_to_float(uint8_t(bytes[l] >> 4));
    }
    lo = Batch::load_aligned(tl);
    hi = Batch::load_aligned(th);
  }

  // ---- GEMV-shaped: one tile of MI activation rows x NJ weight rows ----
  // MI and NJ are template arguments so the MI x NJ accumulators live in registers.
  template <int MI, int NJ>
  struct Tile {
    const GemmArgs& g;
    int64_t i0, j0;
    const float* a[MI];
    const uint8_t* rows[NJ];
    Batch acc[MI][NJ];
    float tail[MI][NJ] = {};  // scalar remainders, already scaled

    Tile(const GemmArgs& args, int64_t i, int64_t j) : g(args), i0(i), j0(j) {
      for (int r = 0; r < MI; ++r) a[r] = g.a + (i0 + r) * g.lda;
      for (int c = 0; c < NJ; ++c) rows[c] = g.w.row(j0 + c);
      for (auto& r : acc)
        for (auto& b : r) b = Batch(0.0f);
    }
    // Scalar products of inputs [p0, p1) with the dequantised weights.
    void scalar_tail(int64_t p0, int64_t p1) {
      for (int c = 0; c < NJ; ++c)
        for (int64_t p = p0; p < p1; ++p) {
          const float wv = g.w.at(j0 + c, p);
          for (int r = 0; r < MI; ++r) tail[r][c] += a[r][p] * wv;
        }
    }
    // Software prefetch of each row `kPrefetchBytes` ahead of byte offset `at`: GEMV streams NJ
    // rows at once, more slowly than a plain copy, and the hardware prefetcher alone leaves the
    // decode waiting on memory (measured: the stalls sit on the first use of each load).
    static constexpr int64_t kPrefetchBytes = 1024;
    void prefetch(int64_t at) const {
      for (int c = 0; c < NJ; ++c) __builtin_prefetch(rows[c] + at + kPrefetchBytes, 0, 3);
    }
    void finish() {
      for (int r = 0; r < MI; ++r)
        for (int c = 0; c < NJ; ++c) store(g, i0 + r, j0 + c, xsimd::hadd(acc[r][c]) + tail[r][c]);
    }
  };

  // Plain formats (F32, BF16): one FMA per weight vector and activation row.
  template <WeightFormat F, int MI, int NJ>
  static void dot_plain(Tile<MI, NJ>& t) {
    const int64_t k = t.g.k, k_vec = k - k % kLanes;
    constexpr int64_t kBytes = F == WeightFormat::kF32 ? 4 : 2;
    for (int64_t p = 0; p < k_vec; p += kLanes) {
      if ((p * kBytes) % 64 == 0) t.prefetch(p * kBytes);
      Batch wv[NJ];
      for (int c = 0; c < NJ; ++c)
        wv[c] = F == WeightFormat::kF32 ? load_f32(t.rows[c], p) : load_bf16(t.rows[c], p);
      for (int r = 0; r < MI; ++r) {
        const Batch av = Batch::load_unaligned(t.a[r] + p);
        for (int c = 0; c < NJ; ++c) t.acc[r][c] = xsimd::fma(av, wv[c], t.acc[r][c]);
      }
    }
    t.scalar_tail(k_vec, k);
  }

  // FP8: per 128-wide block, accumulate code·a in block accumulators, then scale once.
  template <int MI, int NJ>
  static void dot_fp8(Tile<MI, NJ>& t) {
    const WeightView& w = t.g.w;
    const int64_t k = t.g.k;
    const uint8_t* scale_rows[NJ];
    for (int c = 0; c < NJ; ++c) scale_rows[c] = w.scale_row((w.first_row + t.j0 + c) / 128);
    for (int64_t b0 = 0, blk = 0; b0 < k; b0 += 128, ++blk) {
      const int64_t b1 = std::min(k, b0 + 128), b_vec = b0 + (b1 - b0) / kLanes * kLanes;
      Batch part[MI][NJ];
      for (auto& r : part)
        for (auto& b : r) b = Batch(0.0f);
      int64_t p = b0;
      for (; p + 2 * kLanes <= b_vec; p += 2 * kLanes) {
        if (p % 64 == 0) t.prefetch(p);
        Batch w0[NJ], w1[NJ];
        for (int c = 0; c < NJ; ++c) load_fp8_scaled_pair(t.rows[c] + p, w0[c], w1[c]);
        for (int r = 0; r < MI; ++r) {
          const Batch a0 = Batch::load_unaligned(t.a[r] + p);
          const Batch a1 = Batch::load_unaligned(t.a[r] + p + kLanes);
          for (int c = 0; c < NJ; ++c)
            part[r][c] = xsimd::fma(a1, w1[c], xsimd::fma(a0, w0[c], part[r][c]));
        }
      }
      for (; p < b_vec; p += kLanes) {
        Batch wv[NJ];
        for (int c = 0; c < NJ; ++c) wv[c] = load_fp8_scaled(t.rows[c], p);
        for (int r = 0; r < MI; ++r) {
          const Batch av = Batch::load_unaligned(t.a[r] + p);
          for (int c = 0; c < NJ; ++c) part[r][c] = xsimd::fma(av, wv[c], part[r][c]);
        }
      }
      for (int c = 0; c < NJ; ++c) {
        const Batch sv(ue8m0_to_float(scale_rows[c][blk]) * kFp8ViaFp16Factor);
        for (int r = 0; r < MI; ++r) t.acc[r][c] = xsimd::fma(part[r][c], sv, t.acc[r][c]);
      }
    }
    for (int64_t b0 = 0; b0 < k; b0 += 128) {
      const int64_t b1 = std::min(k, b0 + 128);
      t.scalar_tail(b0 + (b1 - b0) / kLanes * kLanes, b1);
    }
  }

  // FP4: activations come pre-permuted (`a_perm` rows of k: per group of 2·kLanes inputs, the
  // even ones then the odd ones) so the low and high nibbles of kLanes bytes meet two vectors.
  // One group of 2·kLanes inputs at p: part (=|+=) even·lo + odd·hi.
  template <bool kFirst, int MI, int NJ>
  static void fp4_group(const Tile<MI, NJ>& t, const float* a_perm, int64_t p,
                        Batch (&part)[MI][NJ]) {
    const int64_t k = t.g.k;
    Batch lo[NJ], hi[NJ];
    for (int c = 0; c < NJ; ++c) load_fp4_pair(t.rows[c] + p / 2, lo[c], hi[c]);
    for (int r = 0; r < MI; ++r) {
      const float* ap = a_perm + r * k + p;
      const Batch ae = Batch::load_unaligned(ap), ao = Batch::load_unaligned(ap + kLanes);
      for (int c = 0; c < NJ; ++c) {
        const Batch prod = xsimd::fma(ao, hi[c], ae * lo[c]);
        if constexpr (kFirst) {
          part[r][c] = prod;
        } else {
          part[r][c] = part[r][c] + prod;
        }
      }
    }
  }

  template <int MI, int NJ>
  static void dot_fp4(Tile<MI, NJ>& t, const float* a_perm) {
    const WeightView& w = t.g.w;
    const int64_t k = t.g.k, group = 2 * kLanes;
    const int64_t n_blocks = k / 32, k_vec = n_blocks * 32;  // whole scale blocks: vector path
    // The rows' block scales as floats first, so the inner loop broadcasts them from memory
    // (a load) instead of building each from its code (shuffle-port work, the bottleneck here).
    thread_local std::vector<float> scale_buffer;
    scale_buffer.resize(size_t(NJ * n_blocks));
    float* scales[NJ];
    for (int c = 0; c < NJ; ++c) {
      const uint8_t* codes = w.scale_row(w.first_row + t.j0 + c);
      scales[c] = scale_buffer.data() + c * n_blocks;
      for (int64_t b = 0; b < n_blocks; ++b) scales[c][b] = ue8m0_to_float(codes[b]);
    }
    for (int64_t b0 = 0, blk = 0; b0 < k_vec; b0 += 32, ++blk) {
      if (b0 % 128 == 0) t.prefetch(b0 / 2);  // 128 FP4 weights = one 64-byte line per row
      Batch part[MI][NJ];
      fp4_group<true>(t, a_perm, b0, part);  // the first group sets part: no zeroing
      for (int64_t p = b0 + group; p < b0 + 32; p += group) fp4_group<false>(t, a_perm, p, part);
      for (int c = 0; c < NJ; ++c) {
        const Batch sv(scales[c][blk]);
        for (int r = 0; r < MI; ++r) t.acc[r][c] = xsimd::fma(part[r][c], sv, t.acc[r][c]);
      }
    }
    t.scalar_tail(k_vec, k);
  }

  template <int MI, int NJ>
  static void dot_tile(const GemmArgs& g, int64_t i0, int64_t j0, const float* a_perm) {
    Tile<MI, NJ> t(g, i0, j0);
    switch (g.w.format) {
      case WeightFormat::kF32:
        dot_plain<WeightFormat::kF32>(t);
        break;
      case WeightFormat::kBF16:
        dot_plain<WeightFormat::kBF16>(t);
        break;
      case WeightFormat::kFp8Block:
        dot_fp8(t);
        break;
      case WeightFormat::kFp4Block:
        dot_fp4(t, a_perm + i0 * g.k);
        break;
      default:
        break;
    }
    t.finish();
  }
  static void dot_any(const GemmArgs& g, int64_t i0, int64_t mi, int64_t j0, int64_t nj,
                      const float* ap) {
    with_count<kTile>(mi, [&]<int MI>() {
      with_count<kTile>(nj, [&]<int NJ>() { dot_tile<MI, NJ>(g, i0, j0, ap); });
    });
  }

  // a_perm[i][p]: within each group of 2·kLanes inputs (whole 32-blocks only), evens then odds.
  static void permute_for_fp4(const GemmArgs& g, std::vector<float>& a_perm) {
    const int64_t k = g.k, group = 2 * kLanes, k_vec = k / 32 * 32;
    a_perm.resize(size_t(g.m * k));
    for (int64_t i = 0; i < g.m; ++i) {
      const float* src = g.a + i * g.lda;
      float* dst = a_perm.data() + i * k;
      for (int64_t p0 = 0; p0 < k_vec; p0 += group)
        for (int64_t l = 0; l < kLanes; ++l) {
          dst[p0 + l] = src[p0 + 2 * l];
          dst[p0 + kLanes + l] = src[p0 + 2 * l + 1];
        }
    }
  }

  // Below this many multiply-adds a GEMM runs on one thread: forking costs more than it saves.
  // Waking a sleeping worker can cost tens of microseconds on a shared VM (measured here: decode of
  // a small model ran 13x slower on 2 threads than on 1 with a 2^18 threshold), so only GEMMs of
  // about a millisecond of work or more fork.
  static constexpr int64_t kParallelMacs = int64_t(1) << 21;

  static void run_dot(const GemmArgs& g) {
    const int64_t n_tiles = (g.n + kTile - 1) / kTile;
    thread_local std::vector<float> a_perm;  // grows once; no allocation per token afterwards
    if (g.w.format == WeightFormat::kFp4Block) permute_for_fp4(g, a_perm);
    const float* ap = a_perm.data();
#pragma omp parallel for schedule(static) if (g.m * g.n * g.k > kParallelMacs)
    for (int64_t jt = 0; jt < n_tiles; ++jt) {
      const int64_t j0 = jt * kTile;
      const int64_t nj = std::min(kTile, g.n - j0);
      for (int64_t i0 = 0; i0 < g.m; i0 += kTile)
        dot_any(g, i0, std::min(kTile, g.m - i0), j0, nj, ap);
    }
  }

  // ---- GEMM-shaped: W panels decoded to fp32 while packed k-major, rows of A broadcast ----
  // Register tile: kMr rows of A × kNv vectors of output columns (kNr = kNv · kLanes weight rows
  // per panel). AVX-512 (32 registers): 8 × 2 = 16 accumulators; the 16-register ISAs 6 × 2.
  // (8 × 3 measured no faster here.)
  static constexpr int64_t kNv = 2;
  static constexpr int64_t kNr = kNv * kLanes;
  static constexpr int64_t kMr = kAvx512 ? 8 : 6;

  // chunk[(p − kb) * kNr + j] = W[j0 + j][p] dequantised for p in [kb, kb + kc), zero beyond n.
  // A chunk is 32 KiB, so the transposing stores stay in L1.
  static void pack_chunk(const GemmArgs& g, int64_t j0, int64_t kb, int64_t kc, float* chunk,
                         float* row) {
    const int64_t nj = std::min(kNr, g.n - j0);
    for (int64_t j = 0; j < kNr; ++j) {
      if (j < nj) {
        decode_range(g.w, j0 + j, kb, kc, row);
        for (int64_t p = 0; p < kc; ++p) chunk[p * kNr + j] = row[p];
      } else {
        for (int64_t p = 0; p < kc; ++p) chunk[p * kNr + j] = 0.0f;
      }
    }
  }

  // dst[i] = W[o][p0 + i] for i < n, with the vector decoders (WeightView::at is the scalar
  // reference). p0 is a multiple of 128 (whole FP8 and FP4 scale blocks).
  static void decode_range(const WeightView& w, int64_t o, int64_t p0, int64_t n, float* dst) {
    const uint8_t* r = w.row(o);
    const int64_t p1 = p0 + n;
    if (w.format == WeightFormat::kF32) {
      std::memcpy(dst, r + 4 * p0, size_t(n) * 4);
    } else if (w.format == WeightFormat::kBF16) {
      int64_t p = p0;
      for (; p + kLanes <= p1; p += kLanes) load_bf16(r, p).store_unaligned(dst + p - p0);
      for (; p < p1; ++p) dst[p - p0] = w.at(o, p);
    } else if (w.format == WeightFormat::kFp8Block) {
      const uint8_t* scales = w.scale_row((w.first_row + o) / 128);
      for (int64_t b0 = p0; b0 < p1; b0 += 128) {
        const int64_t b1 = std::min(p1, b0 + 128);
        const float s = ue8m0_to_float(scales[b0 / 128]);
        const Batch sv(s * kFp8ViaFp16Factor);
        int64_t p = b0;
        for (; p + kLanes <= b1; p += kLanes)
          (load_fp8_scaled(r, p) * sv).store_unaligned(dst + p - p0);
        for (; p < b1; ++p) dst[p - p0] = fp8_e4m3_to_float(r[p]) * s;
      }
    } else if (w.format == WeightFormat::kFp4Block) {
      const uint8_t* scales = w.scale_row(w.first_row + o);
      const int64_t p_vec = p0 + n / (2 * kLanes) * (2 * kLanes);
      alignas(64) float lo[kLanes], hi[kLanes];
      for (int64_t p = p0; p < p_vec; p += 2 * kLanes) {
        Batch l, h;
        load_fp4_pair(r + p / 2, l, h);
        l.store_aligned(lo);
        h.store_aligned(hi);
        for (int64_t i = 0; i < kLanes; ++i) {
          const float s = ue8m0_to_float(scales[(p + 2 * i) / 32]);
          dst[p - p0 + 2 * i] = lo[i] * s;
          dst[p - p0 + 2 * i + 1] = hi[i] * s;
        }
      }
      for (int64_t p = p_vec; p < p1; ++p) dst[p - p0] = w.at(o, p);
    } else {
      for (int64_t p = p0; p < p1; ++p) dst[p - p0] = w.at(o, p);
    }
  }

  // Inputs per k-chunk: a chunk of the panel (kKc × kNr floats, 32 KiB with AVX-512) is decoded
  // once and stays in L1 while every row tile of A passes over it (cache blocking).
  static constexpr int64_t kKc = 256;  // a multiple of 128: chunks hold whole scale blocks

  // C[i0.., j0..] (=|+=) alpha · A[i0.., kb..kb+kc) · panel chunk; `first` applies beta.
  template <int Rows>
  static void packed_tile(const GemmArgs& g, const float* panel, int64_t i0, int64_t j0, int64_t kb,
                          int64_t kc, bool first) {
    Batch acc[Rows][kNv];
    for (auto& row : acc)
      for (auto& v : row) v = Batch(0.0f);
    const float* a_rows[Rows];
    for (int i = 0; i < Rows; ++i) a_rows[i] = g.a + (i0 + i) * g.lda + kb;
    const float* chunk = panel;  // the packed chunk of [kb, kb + kc)
    for (int64_t p = 0; p < kc; ++p) {
      Batch w[kNv];
      for (int v = 0; v < kNv; ++v) w[v] = Batch::load_aligned(chunk + p * kNr + v * kLanes);
      for (int i = 0; i < Rows; ++i) {
        const Batch a(a_rows[i][p]);
        for (int v = 0; v < kNv; ++v) acc[i][v] = xsimd::fma(a, w[v], acc[i][v]);
      }
    }
    const int64_t nj = std::min(kNr, g.n - j0);
    alignas(64) float out[kNr];
    for (int i = 0; i < Rows; ++i) {
      for (int v = 0; v < kNv; ++v) acc[i][v].store_aligned(out + v * kLanes);
      for (int64_t j = 0; j < nj; ++j) {
        if (first) {
          store(g, i0 + i, j0 + j, out[j]);
        } else {
          g.c[(i0 + i) * g.ldc + j0 + j] += g.alpha * out[j];
        }
      }
    }
  }

  static void packed_rows(const GemmArgs& g, const float* panel, int64_t j0, int64_t kb, int64_t kc,
                          bool first) {
    int64_t i = 0;
    for (; i + kMr <= g.m; i += kMr) packed_tile<kMr>(g, panel, i, j0, kb, kc, first);
    if (i < g.m)
      with_count<kMr - 1>(g.m - i,
                          [&]<int Rows>() { packed_tile<Rows>(g, panel, i, j0, kb, kc, first); });
  }

  // One task per panel of kNr weight rows: walk k in L1-sized chunks, each decoded once (the
  // transposing pack stays in L1) and used by every row tile of A.
  static void run_packed(const GemmArgs& g) {
    const int64_t n_panels = (g.n + kNr - 1) / kNr;
    ParallelGuard guard;
#pragma omp parallel if (g.m * g.n * g.k > kParallelMacs)
    {
      // Per-thread scratch that lives as long as the thread: one packed chunk and one row.
      thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> scratch;
      float* chunk = nullptr;
      guard.run([&] {
        if (scratch.size() < size_t(kKc * (kNr + 1))) scratch.resize(size_t(kKc * (kNr + 1)));
        chunk = scratch.data();
      });
#pragma omp for schedule(dynamic)
      for (int64_t jp = 0; jp < n_panels; ++jp) {
        if (!chunk) continue;  // this thread's scratch failed; the guard has the error
        for (int64_t kb = 0; kb < g.k; kb += kKc) {
          const int64_t kc = std::min(kKc, g.k - kb);
          pack_chunk(g, jp * kNr, kb, kc, chunk, chunk + kKc * kNr);
          packed_rows(g, chunk, jp * kNr, kb, kc, kb == 0);
        }
      }
    }
    guard.rethrow();
  }

  static void run(const GemmArgs& g) {
    if (g.m <= kGemvRows) {
      run_dot(g);
    } else {
      run_packed(g);
    }
  }
};

}  // namespace dsv4::cpu::detail
