// The GEMM/GEMV kernel over every weight format, written once over an xsimd architecture tag and
// instantiated in one translation unit per ISA (kernels_<isa>.cpp, each with its own compiler
// flags). The Arch tag is part of every symbol, so the per-ISA copies never collide at link time.
//
// C[m, n] = alpha * A[m, k] . W[n, k]^T + beta * C, with W a WeightView in its stored format.
// Every output is a dot product along k computed by one fixed sequence of vector operations
// (lane-wise partial sums per scale block, the block scale, a horizontal sum, the scalar tail),
// whatever m is and however the rows are tiled or split across threads. So a row's result does
// not depend on the other rows of the call: prefill, chunked prefill and decode give the same
// bits, which is what lets a session rebuild its window by recomputation (truncate, restores
// without the ring).
//  - m <= kDecodeInRegisters (decode, and the few rows an expert gets in a prefill chunk): W is
//    streamed from memory exactly once (with software prefetch) and decoded in registers (BF16 by
//    a shift, FP8 through the fp16 converter, FP4 by a 16-entry table permute).
//  - larger m (prefill): blocks of W rows are decoded once into an L2-sized buffer, with the same
//    decoders, and every row tile of A runs the same dot products over the decoded values.
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
  static constexpr int64_t kTile = 4;  // register tiles of up to 4 rows of A × 4 rows of W
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

  // ---- one tile of MI activation rows x NJ weight rows ----
  // MI and NJ are template arguments so the MI x NJ accumulators live in registers. kDecoded: the
  // weight vectors come from rows decoded beforehand (`decoded`, see decode_rows) instead of being
  // decoded here; the arithmetic is the same.
  template <int MI, int NJ, bool kDecoded = false>
  struct Tile {
    const GemmArgs& g;
    int64_t i0, j0;
    const float* a[MI];
    const uint8_t* rows[NJ];
    const float* decoded[NJ] = {};
    Batch acc[MI][NJ];
    float tail[MI][NJ] = {};  // scalar remainders, already scaled

    Tile(const GemmArgs& args, int64_t i, int64_t j, const float* decoded_rows = nullptr)
        : g(args), i0(i), j0(j) {
      for (int r = 0; r < MI; ++r) a[r] = g.a + (i0 + r) * g.lda;
      for (int c = 0; c < NJ; ++c) rows[c] = g.w.row(j0 + c);
      if constexpr (kDecoded)
        for (int c = 0; c < NJ; ++c) decoded[c] = decoded_rows + c * g.k;
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
      if constexpr (!kDecoded)
        for (int c = 0; c < NJ; ++c) __builtin_prefetch(rows[c] + at + kPrefetchBytes, 0, 3);
    }
    void finish() {
      for (int r = 0; r < MI; ++r)
        for (int c = 0; c < NJ; ++c) store(g, i0 + r, j0 + c, xsimd::hadd(acc[r][c]) + tail[r][c]);
    }
  };

  // Plain formats (F32, BF16): one FMA per weight vector and activation row.
  template <WeightFormat F, int MI, int NJ, bool D>
  static void dot_plain(Tile<MI, NJ, D>& t) {
    const int64_t k = t.g.k, k_vec = k - k % kLanes;
    constexpr int64_t kBytes = F == WeightFormat::kF32 ? 4 : 2;
    for (int64_t p = 0; p < k_vec; p += kLanes) {
      if ((p * kBytes) % 64 == 0) t.prefetch(p * kBytes);
      Batch wv[NJ];
      for (int c = 0; c < NJ; ++c) {
        if constexpr (D) {
          wv[c] = Batch::load_unaligned(t.decoded[c] + p);
        } else {
          wv[c] = F == WeightFormat::kF32 ? load_f32(t.rows[c], p) : load_bf16(t.rows[c], p);
        }
      }
      for (int r = 0; r < MI; ++r) {
        const Batch av = Batch::load_unaligned(t.a[r] + p);
        for (int c = 0; c < NJ; ++c) t.acc[r][c] = xsimd::fma(av, wv[c], t.acc[r][c]);
      }
    }
    t.scalar_tail(k_vec, k);
  }

  // FP8: each weight vector is decoded and multiplied by its block's scale (a power of two, so
  // w·s is exact), then one FMA per activation row: the same operations whether the vector was
  // decoded here or by decode_rows.
  template <int MI, int NJ, bool D>
  static void dot_fp8(Tile<MI, NJ, D>& t) {
    const WeightView& w = t.g.w;
    const int64_t k = t.g.k;
    const uint8_t* scale_rows[NJ];
    for (int c = 0; c < NJ; ++c) scale_rows[c] = w.scale_row((w.first_row + t.j0 + c) / 128);
    for (int64_t b0 = 0, blk = 0; b0 < k; b0 += 128, ++blk) {
      const int64_t b1 = std::min(k, b0 + 128), b_vec = b0 + (b1 - b0) / kLanes * kLanes;
      Batch sv[NJ];
      if constexpr (!D)
        for (int c = 0; c < NJ; ++c)
          sv[c] = Batch(ue8m0_to_float(scale_rows[c][blk]) * kFp8ViaFp16Factor);
      int64_t p = b0;
      for (; p + 2 * kLanes <= b_vec; p += 2 * kLanes) {
        if (p % 64 == 0) t.prefetch(p);
        Batch w0[NJ], w1[NJ];
        for (int c = 0; c < NJ; ++c) {
          if constexpr (D) {
            w0[c] = Batch::load_unaligned(t.decoded[c] + p);
            w1[c] = Batch::load_unaligned(t.decoded[c] + p + kLanes);
          } else {
            load_fp8_scaled_pair(t.rows[c] + p, w0[c], w1[c]);
            w0[c] = w0[c] * sv[c];
            w1[c] = w1[c] * sv[c];
          }
        }
        for (int r = 0; r < MI; ++r) {
          const Batch a0 = Batch::load_unaligned(t.a[r] + p);
          const Batch a1 = Batch::load_unaligned(t.a[r] + p + kLanes);
          for (int c = 0; c < NJ; ++c)
            t.acc[r][c] = xsimd::fma(a1, w1[c], xsimd::fma(a0, w0[c], t.acc[r][c]));
        }
      }
      for (; p < b_vec; p += kLanes) {
        Batch wv[NJ];
        for (int c = 0; c < NJ; ++c)
          wv[c] = D ? Batch::load_unaligned(t.decoded[c] + p)
                    : Batch(load_fp8_scaled(t.rows[c], p) * sv[c]);
        for (int r = 0; r < MI; ++r) {
          const Batch av = Batch::load_unaligned(t.a[r] + p);
          for (int c = 0; c < NJ; ++c) t.acc[r][c] = xsimd::fma(av, wv[c], t.acc[r][c]);
        }
      }
    }
    for (int64_t b0 = 0; b0 < k; b0 += 128) {
      const int64_t b1 = std::min(k, b0 + 128);
      t.scalar_tail(b0 + (b1 - b0) / kLanes * kLanes, b1);
    }
  }

  // FP4: activations come pre-permuted (`a_perm` rows of k: per group of 2·kLanes inputs, the
  // even ones then the odd ones) so the low and high nibbles of kLanes bytes meet two vectors.
  // Both vectors are multiplied by the block scale (exact: a power of two), then one FMA each
  // per activation row.
  template <int MI, int NJ, bool D>
  static void dot_fp4(Tile<MI, NJ, D>& t, const float* a_perm) {
    const WeightView& w = t.g.w;
    const int64_t k = t.g.k, group = 2 * kLanes;
    const int64_t n_blocks = k / 32, k_vec = n_blocks * 32;  // whole scale blocks: vector path
    // The rows' block scales as floats first, so the inner loop broadcasts them from memory
    // (a load) instead of building each from its code (shuffle-port work, the bottleneck here).
    thread_local std::vector<float> scale_buffer;
    float* scales[NJ];
    if constexpr (!D) {
      scale_buffer.resize(size_t(NJ * n_blocks));
      for (int c = 0; c < NJ; ++c) {
        const uint8_t* codes = w.scale_row(w.first_row + t.j0 + c);
        scales[c] = scale_buffer.data() + c * n_blocks;
        for (int64_t b = 0; b < n_blocks; ++b) scales[c][b] = ue8m0_to_float(codes[b]);
      }
    }
    for (int64_t b0 = 0, blk = 0; b0 < k_vec; b0 += 32, ++blk) {
      if (b0 % 128 == 0) t.prefetch(b0 / 2);  // 128 FP4 weights = one 64-byte line per row
      for (int64_t p = b0; p < b0 + 32; p += group) {
        Batch lo[NJ], hi[NJ];
        for (int c = 0; c < NJ; ++c) {
          if constexpr (D) {
            lo[c] = Batch::load_unaligned(t.decoded[c] + p);
            hi[c] = Batch::load_unaligned(t.decoded[c] + p + kLanes);
          } else {
            load_fp4_pair(t.rows[c] + p / 2, lo[c], hi[c]);
            const Batch sv(scales[c][blk]);
            lo[c] = lo[c] * sv;
            hi[c] = hi[c] * sv;
          }
        }
        for (int r = 0; r < MI; ++r) {
          const float* ap = a_perm + r * k + p;
          const Batch ae = Batch::load_unaligned(ap), ao = Batch::load_unaligned(ap + kLanes);
          for (int c = 0; c < NJ; ++c)
            t.acc[r][c] = xsimd::fma(ao, hi[c], xsimd::fma(ae, lo[c], t.acc[r][c]));
        }
      }
    }
    t.scalar_tail(k_vec, k);
  }

  template <int MI, int NJ, bool D>
  static void dot_tile(const GemmArgs& g, int64_t i0, int64_t j0, const float* a_perm,
                       const float* decoded) {
    Tile<MI, NJ, D> t(g, i0, j0, decoded);
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
  template <bool D>
  static void dot_any(const GemmArgs& g, int64_t i0, int64_t mi, int64_t j0, int64_t nj,
                      const float* ap, const float* decoded = nullptr) {
    with_count<kTile>(mi, [&]<int MI>() {
      with_count<kTile>(nj, [&]<int NJ>() { dot_tile<MI, NJ, D>(g, i0, j0, ap, decoded); });
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

  // Up to this many activation rows, W is decoded in registers as it streams by; beyond, each
  // block of W rows is decoded once into a buffer and shared by every row tile (the decode would
  // otherwise be repeated per row tile and set the pace). Both give the same bits, so this is a
  // speed choice only: measured with bench_gemm on an expert's shape (FP4 2048×4096), decoding in
  // registers is 1.4× faster at 6 rows and 1.2× at 12.
  static constexpr int64_t kDecodeInRegisters = 16;

  static bool parallel(const GemmArgs& g) { return g.m * g.n * g.k > kParallelMacs; }

  static void run_in_registers(const GemmArgs& g, const float* ap) {
    const int64_t n_tiles = (g.n + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (parallel(g))
    for (int64_t jt = 0; jt < n_tiles; ++jt) {
      const int64_t j0 = jt * kTile;
      const int64_t nj = std::min(kTile, g.n - j0);
      for (int64_t i0 = 0; i0 < g.m; i0 += kTile)
        dot_any<false>(g, i0, std::min(kTile, g.m - i0), j0, nj, ap);
    }
  }

  // The vector part of W rows [j0, j0 + nj) as the tiles see it after decoding and scaling:
  // out[c·k + p] is the lane value for input p (BF16 and FP8 in order; FP4 per group of 2·kLanes
  // inputs, the even ones then the odd ones). The scalar tails stay with WeightView::at.
  static void decode_rows(const WeightView& w, int64_t j0, int64_t nj, int64_t k, float* out) {
    for (int64_t c = 0; c < nj; ++c) {
      const uint8_t* row = w.row(j0 + c);
      float* dst = out + c * k;
      switch (w.format) {
        case WeightFormat::kF32:
          std::memcpy(dst, row, size_t(k) * 4);
          break;
        case WeightFormat::kBF16:
          for (int64_t p = 0; p + kLanes <= k; p += kLanes)
            load_bf16(row, p).store_unaligned(dst + p);
          break;
        case WeightFormat::kFp8Block: {
          const uint8_t* scales = w.scale_row((w.first_row + j0 + c) / 128);
          for (int64_t b0 = 0; b0 < k; b0 += 128) {
            const int64_t b_vec = b0 + (std::min(k, b0 + 128) - b0) / kLanes * kLanes;
            const Batch sv(ue8m0_to_float(scales[b0 / 128]) * kFp8ViaFp16Factor);
            for (int64_t p = b0; p < b_vec; p += kLanes)
              Batch(load_fp8_scaled(row, p) * sv).store_unaligned(dst + p);
          }
          break;
        }
        case WeightFormat::kFp4Block: {
          const uint8_t* scales = w.scale_row(w.first_row + j0 + c);
          for (int64_t p = 0; p + 2 * kLanes <= k / 32 * 32; p += 2 * kLanes) {
            Batch lo, hi;
            load_fp4_pair(row + p / 2, lo, hi);
            const Batch sv(ue8m0_to_float(scales[p / 32]));
            Batch(lo * sv).store_unaligned(dst + p);
            Batch(hi * sv).store_unaligned(dst + p + kLanes);
          }
          break;
        }
        default:
          break;
      }
    }
  }

  // Weight rows per decoded block: about 512 KiB of fp32, so the block stays in L2 while every
  // row tile of A passes over it.
  static int64_t decoded_block_rows(int64_t k) {
    const int64_t rows = (int64_t(512) << 10) / (4 * std::max<int64_t>(k, 1));
    return std::max(kTile, rows / kTile * kTile);
  }

  static void run_decoded(const GemmArgs& g, const float* ap) {
    const int64_t block = decoded_block_rows(g.k);
    const int64_t n_blocks = (g.n + block - 1) / block;
    ParallelGuard guard;
#pragma omp parallel if (parallel(g))
    {
      // Per-thread scratch that lives as long as the thread: one decoded block.
      thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> scratch;
      float* decoded = nullptr;
      guard.run([&] {
        if (scratch.size() < size_t(block * g.k)) scratch.resize(size_t(block * g.k));
        decoded = scratch.data();
      });
#pragma omp for schedule(dynamic)
      for (int64_t jb = 0; jb < n_blocks; ++jb) {
        if (!decoded) continue;  // this thread's scratch failed; the guard has the error
        const int64_t j_begin = jb * block, j_end = std::min(g.n, j_begin + block);
        decode_rows(g.w, j_begin, j_end - j_begin, g.k, decoded);
        for (int64_t i0 = 0; i0 < g.m; i0 += kTile)
          for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile)
            dot_any<true>(g, i0, std::min(kTile, g.m - i0), j0, std::min(kTile, j_end - j0), ap,
                          decoded + (j0 - j_begin) * g.k);
      }
    }
    guard.rethrow();
  }

  static void run(const GemmArgs& g) {
    thread_local std::vector<float> a_perm;  // grows once; no allocation per token afterwards
    if (g.w.format == WeightFormat::kFp4Block) permute_for_fp4(g, a_perm);
    const float* ap = a_perm.data();
    if (g.m <= kDecodeInRegisters) {
      run_in_registers(g, ap);
    } else {
      run_decoded(g, ap);
    }
  }
};

}  // namespace dsv4::cpu::detail
