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
//  - m up to register_rows_limit (decode, batched decode, few-row expert GEMMs): W is
//    streamed from memory exactly once (with software prefetch) and decoded in registers (BF16 by
//    a shift, FP8 by bit operations in lane order on AVX-512 and through the fp16 converter
//    elsewhere, FP4 by a 16-entry table permute).
//  - larger m (prefill): blocks of W rows are decoded once into an L2-sized buffer, with the same
//    decoders, and the same dot products run over the decoded values: on AVX-512 and AVX2 as
//    tiles that broadcast activations over 2·kLanes weight rows, both operands in lane planes
//    (run_strips: each lane's chain, then the horizontal sum's additions in its order); on SSE2
//    as register tiles of A, k cut into slices whose lane-wise partial sums wait in memory
//    (multiply_decoded_block).
#pragma once

#include <omp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>
#include <xsimd/xsimd.hpp>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu_kernels.hpp"
#include "dsv4/backend/backend.hpp"
#include "parallel_guard.hpp"

namespace dsv4::cpu::detail {

// e4m3 code -> fp16 bits of (value × 2^-8): sign to bit 15, the 7 exponent+mantissa bits to
// bits 7..13. Exact for normal and subnormal codes (fp16 has the range), so the fp16 converter
// does the rest and the 2^8 is folded into the block scale. (The AVX-512 unit decoder,
// fp8_unit_times_256, yields value × 2^8 instead: there the scale is divided by the factor.)
inline constexpr float kFp8ViaFp16Factor = 256.0f;

// The FP4 table times each ue8m0 scale, one 64-byte row per code: entry v of row e is
// fp4_e2m1_to_float(v) · ue8m0_to_float(e), exactly (a product of at most two significant bits
// and a power of two: normal, subnormal down to 2^-128, infinite above 2^128, NaN for code
// 255, as the multiply gives). Scaling the table in registers cost the in-cache GEMV a tenth
// (a multiply per block and row on the pipes the FMAs use; an integer add to the exponent
// fields, on any pipe, still 6% against this load: measured with throughput loops on Zen 4).
// Built from bits, since a constant expression may not overflow to infinity. Only the rows of
// the codes a model uses are ever read (a few lines of L1). Used by the AVX-512 tiled FP4 GEMV
// (GemmKernel::dot_fp4_units_avx512).
constexpr uint32_t fp4_scaled_bits(int v, int code) {
  const uint32_t sign = v & 8 ? 0x80000000u : 0u;
  const int magnitude = v & 7;
  if (code == 255) return 0x7fc00000u;
  if (magnitude == 0) return sign;
  // magnitude 1..7 is 0.5, 1, 1.5, 2, 3, 4, 6: m · 2^x with m in {1, 1.5}
  const int x = magnitude == 1 ? -1 : (magnitude - 2) / 2;
  const bool half = magnitude >= 3 && magnitude % 2 == 1;
  const int exponent = x + code - 127;  // of the product m · 2^exponent
  if (exponent > 127) return sign | 0x7f800000u;
  if (exponent >= -126) return sign | uint32_t(exponent + 127) << 23 | (half ? 1u << 22 : 0u);
  // subnormal: m · 2^exponent in units of 2^-149
  return sign | (half ? 3u << (exponent + 148) : 1u << (exponent + 149));
}
alignas(64) inline constexpr std::array<std::array<float, 16>, 256> kFp4ScaledTables = [] {
  std::array<std::array<float, 16>, 256> tables{};
  for (int code = 0; code < 256; ++code)
    for (int v = 0; v < 16; ++v)
      tables[size_t(code)][size_t(v)] = std::bit_cast<float>(fp4_scaled_bits(v, code));
  return tables;
}();

// Tiles are handed out in chunks of about 512 KiB of weights, first come first served: on a
// shared machine one thread of a static split often finished late and the other waited at the
// barrier (a sixth of a decode step's samples were spent there). With tiled weights a chunk is
// one sequential stream, and longer streams read faster: 512 KiB against 128 KiB measured +5-8%
// on the 4096x4096 GEMVs of every format and 3-17% less time per token on the slice's 1K decode
// (interleaved; 256 KiB and 1 MiB measured like 512).
// Smaller chunks only where a group has too few for its threads: with 512 KiB a group of a few
// MiB (attention's wq_a and wkv on V4-Flash: 6 MiB, 12 chunks) would leave most threads of a
// many-core server idle while memory could feed them. Each thread then gets about
// kGemmChunksPerThread chunks, none below kGemmMinChunkBytes (a stream the prefetchers can
// follow). Two threads keep 512 KiB chunks for any group of 4 MiB or more.
inline constexpr int64_t kGemmChunkBytes = int64_t(512) << 10;
inline constexpr int64_t kGemmMinChunkBytes = int64_t(64) << 10;
inline constexpr int64_t kGemmChunksPerThread = 4;
constexpr int64_t gemm_chunk_bytes(int64_t group_weight_bytes, int64_t threads) {
  const int64_t share = group_weight_bytes / (std::max<int64_t>(threads, 1) * kGemmChunksPerThread);
  return std::clamp(share, kGemmMinChunkBytes, kGemmChunkBytes);
}

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

  // ---- decoders: kLanes weights from their codes at src ----
  // (A vector's codes never cross a 64-byte unit: they start at a multiple of their size, which
  // is at most 64 bytes, so the tiled layout keeps them contiguous.)
  static Batch load_f32(const uint8_t* src) {
    return Batch::load_unaligned(reinterpret_cast<const float*>(src));
  }
  static Batch load_bf16(const uint8_t* src) {
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
  static Batch load_fp8_scaled(const uint8_t* src) {
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
#if defined(__x86_64__)
  // AVX-512: a 64-byte unit of e4m3 codes as their values times 2^8, in lane order (see
  // lane_stride: w[j] lane l holds code 4l + j), by in-lane bit operations alone: nine uops for
  // the 64 codes, where widening 16 codes at a time crosses the 128-bit lanes (a shuffle each)
  // and measured 15-20% slower in cache here. Shifted right by 4 within 16-bit words, a code in a
  // word's high byte has its sign in bit 15 (and the bits above it) and exponent+mantissa in bits
  // 4..10; moved to the high word of its dword, the mask keeps bits 31 and 20..26 and bit 30 adds
  // 128 to the exponent: sign | (e + 120) | m, the code's value times 2^8. Codes with a zero
  // exponent field (zero, subnormals) come out as if they were normal and are corrected
  // (fix_zero_exponents) in the units that hold any.
  [[gnu::always_inline]] static inline void fp8_unit_times_256(__m512i codes, Batch (&w)[4]) {
    const __m512i keep = _mm512_set1_epi32(int32_t(0x87F00000u));
    const __m512i exponent_bias = _mm512_set1_epi32(0x40000000);
    const __m512i odd = _mm512_srai_epi16(codes, 4);                         // codes 4l + 1, 4l + 3
    const __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(codes, 8), 4);  // codes 4l, 4l + 2
    const auto bits = [&](__m512i x) {
      return Batch(_mm512_castsi512_ps(_mm512_ternarylogic_epi32(x, keep, exponent_bias, 0xEA)));
    };  // x & keep | bias
    // (The zero-masked shift with every lane kept: GCC 12 warns that the plain form's undefined
    // pass-through operand is uninitialized.)
    const auto low_word_up = [](__m512i x) { return _mm512_maskz_slli_epi32(0xFFFF, x, 16); };
    w[0] = bits(low_word_up(even));
    w[1] = bits(low_word_up(odd));
    w[2] = bits(even);
    w[3] = bits(odd);
    if (_mm512_testn_epi8_mask(codes, _mm512_set1_epi8(0x78)) != 0) [[unlikely]] {
      for (int j = 0; j < 4; ++j) w[j] = fix_zero_exponents(codes, j, w[j]);
    }
  }
  // A code with a zero exponent field, m·2^-9 (m its 3 mantissa bits), comes out of
  // fp8_unit_times_256 as ±(2 + m/4) instead of ±m/2: twice it less ±4 is exact (so ±0 becomes +0,
  // which no sum can tell from -0: accumulators start at +0). Lanes of normal codes (byte j of
  // each 32-bit lane of `codes`) are kept. Inline like its caller: a call taking the vectors by
  // reference had put them, and the caller's accumulators, in memory (the GEMV ran at half speed).
  [[gnu::always_inline]] static inline Batch fix_zero_exponents(__m512i codes, int j, __m512 v) {
    const __mmask16 zero =
        _mm512_testn_epi32_mask(codes, _mm512_set1_epi32(int32_t(0x78u << (8 * j))));
    const __m512 signed_four = _mm512_castsi512_ps(
        _mm512_ternarylogic_epi32(_mm512_castps_si512(v), _mm512_set1_epi32(int32_t(0x80000000u)),
                                  _mm512_castps_si512(_mm512_set1_ps(4.0f)), 0xEA));
    return Batch(_mm512_mask_fmsub_ps(v, zero, _mm512_set1_ps(2.0f), signed_four));
  }
#endif
  // FP4: kLanes bytes hold 2·kLanes weights, times `scale`; `lo` gets the even ones (the low
  // nibbles), `hi` the odd ones. `Transposed` says where lane l's byte is: `at`[l] (rows as
  // stored), or byte `block` of the 32-bit word at `at` + 4·l (a unit of the tiled or row-unit
  // layout, transposed: the vector ISAs load whole words and shift that byte down instead of
  // widening bytes). The scale multiplies the 16-entry table once instead of both vectors (the
  // same values: a permute only selects).
  template <bool Transposed>
  static void load_fp4_pair(const uint8_t* at, int block, float scale, Batch& lo, Batch& hi) {
#if defined(__x86_64__)
    if constexpr (kAvx512) {
      const __m512 lut =
          _mm512_mul_ps(_mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f,
                                       -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f),
                        _mm512_set1_ps(scale));
      const __m512i idx =
          Transposed ? _mm512_srli_epi32(_mm512_loadu_si512(at), unsigned(8 * block))
                     : _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at)));
      lo = Batch(_mm512_permutexvar_ps(idx, lut));  // uses the low 4 bits of each index
      hi = Batch(_mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), lut));
      return;
    } else if constexpr (kAvx2) {
      const __m256 magnitude = _mm256_mul_ps(
          _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f), _mm256_set1_ps(scale));
      const __m256i sign_bit = _mm256_set1_epi32(int32_t(0x80000000u));
      const __m256i idx =
          Transposed ? _mm256_srli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(at)),
                                         8 * block)
                     : _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(at)));
      const __m256i idx_hi = _mm256_srli_epi32(idx, 4);
      // permutevar8x32 uses the low 3 bits (the magnitude); bit 3 is the sign (bits above 3,
      // other bytes of a tiled word, are shifted out).
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
      const uint8_t byte = Transposed ? at[4 * l + block] : at[l];
      tl[l] = fp4_e2m1_to_float(uint8_t(byte & 0xf)) * scale;
      th[l] = fp4_e2m1_to_float(uint8_t(byte >> 4)) * scale;
    }
    lo = Batch::load_aligned(tl);
    hi = Batch::load_aligned(th);
  }
  // load_fp4_pair for the 2·kLanes weights from element p (a multiple of 2·kLanes) of a row
  // whose 64-byte unit holding them starts at `unit`.
  template <bool Transposed>
  static void fp4_pair_in_unit(const uint8_t* unit, int64_t p, float scale, Batch& lo, Batch& hi) {
    const int64_t q = p / 2 % 64;  // the first pair's byte in the unit as stored in rows
    if constexpr (Transposed)
      load_fp4_pair<true>(unit + 4 * (q % 16), int(q / 16), scale, lo, hi);
    else
      load_fp4_pair<false>(unit + q, 0, scale, lo, hi);
  }

  // The scalar part of output (i, j): products of inputs [p0, p1) with the dequantised weights,
  // summed in order. Both GEMM paths take their tails from here.
  static float scalar_tail_sum(const GemmArgs& g, int64_t i, int64_t j, int64_t p0, int64_t p1) {
    const float* a = g.a + i * g.lda;
    float tail = 0.0f;
    for (int64_t p = p0; p < p1; ++p) tail += a[p] * g.w.at(j, p);
    return tail;
  }

  // The smallest nonzero and the largest magnitude among a call's activations (the largest is
  // infinite when one is not finite): the FP8 register path scales activations instead of weights
  // by a power of two only where that is exact for all of them.
  struct ActivationRange {
    float min_nonzero = std::numeric_limits<float>::infinity();
    float max = std::numeric_limits<float>::infinity();  // until measured: nothing is exact
    // Whether a·scale is a normal number or zero for every activation a (scale a power of two).
    // Strictly above the smallest normal: a subnormal product can round up to it.
    bool scales_exactly(float scale) const {
      return min_nonzero * scale > std::numeric_limits<float>::min() &&
             max * scale <= std::numeric_limits<float>::max();
    }
  };
  static ActivationRange activation_range(const GemmArgs& g) {
    constexpr float kInf = std::numeric_limits<float>::infinity();
    const Batch largest_finite(std::numeric_limits<float>::max());
    Batch lo(kInf), hi(0.0f);
    auto finite = largest_finite == largest_finite;
    float lo_tail = kInf, hi_tail = 0.0f;
    bool finite_tail = true;
    const int64_t k_vec = g.k / kLanes * kLanes;
    for (int64_t i = 0; i < g.m; ++i) {
      const float* a = g.a + i * g.lda;
      for (int64_t p = 0; p < k_vec; p += kLanes) {
        const Batch v = xsimd::abs(Batch::load_unaligned(a + p));
        finite = finite & (v <= largest_finite);  // false for NaN too
        hi = xsimd::max(hi, v);
        lo = xsimd::min(lo, xsimd::select(v > Batch(0.0f), v, Batch(kInf)));
      }
      for (int64_t p = k_vec; p < g.k; ++p) {
        const float v = std::fabs(a[p]);
        finite_tail = finite_tail && v <= std::numeric_limits<float>::max();
        hi_tail = std::max(hi_tail, v);
        if (v > 0.0f) lo_tail = std::min(lo_tail, v);
      }
    }
    alignas(64) float lanes_lo[kLanes], lanes_hi[kLanes];
    lo.store_aligned(lanes_lo);
    hi.store_aligned(lanes_hi);
    ActivationRange range;
    range.min_nonzero = std::min(lo_tail, *std::min_element(lanes_lo, lanes_lo + kLanes));
    range.max = xsimd::all(finite) && finite_tail
                    ? std::max(hi_tail, *std::max_element(lanes_hi, lanes_hi + kLanes))
                    : kInf;
    return range;
  }

  // What the register tiles read besides GemmArgs, prepared once per call.
  struct RegisterInputs {
    const float* lane_order = nullptr;  // where lane_stride > 1: the activations in lane order
    ActivationRange range;              // FP8 on AVX-512: for prescales_exactly
    GemvPrefetch prefetch;              // this CPU's for the weights' format
  };

  // ---- one tile of MI activation rows x NJ weight rows, decoded in registers ----
  // MI and NJ are template arguments so the MI x NJ accumulators live in registers.
  template <int MI, int NJ>
  struct Tile {
    const GemmArgs& g;
    int64_t i0, j0;
    const float* a[MI];
    const uint8_t* rows[NJ];       // StoredRow::base of each weight row
    const uint8_t* next_rows[NJ];  // row c of the next tile (where prefetch continues)
    int64_t unit_stride;           // StoredRow::unit_stride, the same for every row
    int64_t row_bytes;
    GemvPrefetch lead;
    Batch acc[MI][NJ];
    float tail[MI][NJ] = {};  // scalar remainders, already scaled

    Tile(const GemmArgs& args, int64_t i, int64_t j, GemvPrefetch prefetch)
        : g(args),
          i0(i),
          j0(j),
          unit_stride(args.w.stored_row(j).unit_stride),
          row_bytes(args.w.row_bytes()),
          lead(prefetch) {
      for (int r = 0; r < MI; ++r) a[r] = g.a + (i0 + r) * g.lda;
      for (int c = 0; c < NJ; ++c) {
        rows[c] = g.w.stored_row(j0 + c).base;
        // The last tile has no next one: its own rows again (cached already, so a no-op).
        next_rows[c] = j0 + kTile + c < g.n ? g.w.stored_row(j0 + kTile + c).base : rows[c];
      }
      for (auto& r : acc)
        for (auto& b : r) b = Batch(0.0f);
    }
    void scalar_tail(int64_t p0, int64_t p1) {
      for (int r = 0; r < MI; ++r)
        for (int c = 0; c < NJ; ++c) tail[r][c] = scalar_tail_sum(g, i0 + r, j0 + c, p0, p1);
    }
    // Software prefetch of each row `lead.bytes` ahead of byte offset `at`: GEMV streams NJ
    // rows at once, more slowly than a plain copy, and the hardware prefetcher alone leaves the
    // decode waiting on memory (measured: the stalls sit on the first use of each load). Near a
    // row's end it continues into the same row of the next tile (the tiles' usual order): the
    // next tile's rows would otherwise start cold, and their first bytes, waited for with little
    // memory parallelism, had cost the FP8 GEMV a quarter of its speed.
    // Always inlined: GCC takes a function whose only effect is a prefetch for one without side
    // effects, and where such a call is not inlined early it deletes it (the FP8 GEMV lost its
    // prefetch that way and read memory 20% slower).
    // Tiled rows lie in one stream, the next group (the next tile) right after this one: the
    // same lead in row bytes is kTileRows times as far along the stream, and past a row's end it
    // lands in the next tile by itself.
    // The lead and the cache level are the CPU's (gemv_prefetch): on Zen 4 into L2 (prefetcht1),
    // 2 KiB ahead (a prefetch into L1 held one of the core's few L1 miss buffers for the whole
    // trip to memory, and the lead the stream needs ran out of them: against L1 at 1 KiB, L2 at
    // 2 KiB read FP8 +13%, FP4 +5%, BF16 +18%; docs/performance.md, sixth round); on Intel's
    // cores into L1, 512 bytes ahead, and FP4 in row units and BF16 rows also into L2 4 KiB ahead
    // (`lead.far`; twelfth and thirteenth rounds).
    [[gnu::always_inline]] inline void prefetch(int64_t at) const {
      const int64_t ahead = at + lead.bytes;
      if (g.w.tiled()) {
        for (int c = 0; c < NJ; ++c) touch(rows[c] + (ahead >> 6) * unit_stride);
        return;
      }
      for (int c = 0; c < NJ; ++c) touch(in_row_or_next(c, ahead));
      if (lead.far > 0)
        for (int c = 0; c < NJ; ++c) __builtin_prefetch(in_row_or_next(c, at + lead.far), 0, 2);
    }
    // Byte `at` of row c, or past its end the byte that far into the next tile's row c (rows as
    // stored are read in that order).
    [[gnu::always_inline]] inline const uint8_t* in_row_or_next(int c, int64_t at) const {
      return at < row_bytes ? rows[c] + at : next_rows[c] + (at - row_bytes);
    }
    [[gnu::always_inline]] inline void touch(const uint8_t* line) const {
      if (lead.into_l1)
        __builtin_prefetch(line, 0, 3);
      else
        __builtin_prefetch(line, 0, 2);
    }
    // Byte `byte` of weight row c: StoredRow::at without the FP4 unit transposition, which the
    // kernels never need here (they ask a tiled FP4 row for the starts of its units only).
    const uint8_t* at(int c, int64_t byte) const {
      return rows[c] + (byte >> 6) * unit_stride + (byte & 63);
    }
    // The kernels accumulate in a local copy of acc and store it back once: acc itself is part of
    // the tile in memory, and since the activations are floats that could alias it, the compiler
    // kept every accumulator there, so each FMA chain waited for a store and a reload (the FP4
    // GEMV ran at a third of its decode speed).
    void load_acc(Batch (&local)[MI][NJ]) const {
      for (int r = 0; r < MI; ++r)
        for (int c = 0; c < NJ; ++c) local[r][c] = acc[r][c];
    }
    void store_acc(const Batch (&local)[MI][NJ]) {
      for (int r = 0; r < MI; ++r)
        for (int c = 0; c < NJ; ++c) acc[r][c] = local[r][c];
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
    Batch acc[MI][NJ];
    t.load_acc(acc);
    for (int64_t p = 0; p < k_vec; p += kLanes) {
      if ((p * kBytes) % 64 == 0) t.prefetch(p * kBytes);
      Batch wv[NJ];
      for (int c = 0; c < NJ; ++c)
        wv[c] = F == WeightFormat::kF32 ? load_f32(t.at(c, p * 4)) : load_bf16(t.at(c, p * 2));
      for (int r = 0; r < MI; ++r) {
        const Batch av = Batch::load_unaligned(t.a[r] + p);
        for (int c = 0; c < NJ; ++c) acc[r][c] = xsimd::fma(av, wv[c], acc[r][c]);
      }
    }
    t.store_acc(acc);
    t.scalar_tail(k_vec, k);
  }

  // Decoded block scales, times a power-of-two factor (exact), of the scale rows a chunk's tiles
  // read, kept across the chunk: an FP8 scale row serves 128 weight rows, the 32 tiles of a chunk
  // of 4096 inputs, and decoded per tile (with dot_fp8_avx512's check whether the activations may
  // take it) it had cost 2.3% of a V4-Flash-slice decode step. The inner loops broadcast the
  // decoded values from memory (a load) instead of building them from their codes in branchy
  // scalar code per block and row. The keys are the scale rows' addresses, which hold within one
  // GEMM: run_chunk clears the cache.
  struct ScaleRows {
    struct Row {
      const uint8_t* codes = nullptr;
      std::vector<float> values;  // grows once per thread
      int prescales = -1;  // dot_fp8_avx512: whether the activations may take it (-1: not known)
      uint64_t used = 0;   // when last asked for
    };
    // A tile asks for at most kTile rows, and a miss replaces the row asked for longest ago, so
    // no row of the tile being set up is replaced.
    static constexpr int kRows = 2 * kTile;
    std::array<Row, kRows> rows;
    uint64_t clock = 0;
    void clear() {
      for (Row& r : rows) r.codes = nullptr;
    }
    Row& get(const uint8_t* codes, int64_t n, float factor) {
      Row* oldest = &rows[0];
      for (Row& r : rows) {
        if (r.codes == codes) {
          r.used = ++clock;
          return r;
        }
        if (r.used < oldest->used) oldest = &r;
      }
      Row& r = *oldest;
      r.values.resize(size_t(n));  // (std::bad_alloc leaves the row as it was)
      for (int64_t b = 0; b < n; ++b) r.values[size_t(b)] = ue8m0_to_float(codes[b]) * factor;
      r.codes = codes;
      r.prescales = -1;
      r.used = ++clock;
      return r;
    }
  };
  static ScaleRows& scale_rows() {
    thread_local ScaleRows rows;
    return rows;
  }
  // The tile's scale rows, rows[c] for W row j0 + c (FP8: its 128-row block's row of scales, the
  // same Row for all NJ but where a tile straddles two blocks), each value times `factor`.
  template <int MI, int NJ>
  static void block_scales(const Tile<MI, NJ>& t, ScaleRows& cache, int64_t n_blocks, float factor,
                           typename ScaleRows::Row* rows[NJ]) {
    const WeightView& w = t.g.w;
    const int64_t rows_per_scale = weight_format_traits(w.format).block_out;
    // One division per tile (rows_per_scale is known only at run time; two per row had taken a
    // third of the scales' time on FP8 tiles of 1024 inputs).
    const int64_t first = w.first_row + t.j0;
    int64_t scale_row = first / rows_per_scale,
            next_scale_row_at = (scale_row + 1) * rows_per_scale;
    for (int c = 0; c < NJ; ++c) {
      if (first + c == next_scale_row_at) {
        ++scale_row;
        next_scale_row_at += rows_per_scale;
      } else if (c > 0) {
        rows[c] = rows[c - 1];
        continue;
      }
      rows[c] = &cache.get(w.scale_row(scale_row), n_blocks, factor);
    }
  }

  // FP8: each weight vector is decoded and multiplied by its block's scale (a power of two, so
  // w·s is exact), then one FMA per activation row (decode_rows gives the prefill path the same
  // products). AVX-512 takes dot_fp8_avx512.
  template <int MI, int NJ>
  static void dot_fp8(Tile<MI, NJ>& t, ScaleRows& cache, const float* a_lane,
                      const ActivationRange& range) {
    const int64_t k = t.g.k;
    typename ScaleRows::Row* rows[NJ];
#if defined(__x86_64__)
    if constexpr (kAvx512) {
      block_scales(t, cache, (k + 127) / 128, 1.0f / kFp8ViaFp16Factor, rows);
      dot_fp8_avx512(t, a_lane, range, rows);
      return;
    }
#endif
    (void)a_lane, (void)range;
    block_scales(t, cache, (k + 127) / 128, kFp8ViaFp16Factor, rows);
    Batch acc[MI][NJ];
    t.load_acc(acc);
    for (int64_t b0 = 0, blk = 0; b0 < k; b0 += 128, ++blk) {
      const int64_t b1 = std::min(k, b0 + 128), b_vec = b0 + (b1 - b0) / kLanes * kLanes;
      Batch sv[NJ];
      for (int c = 0; c < NJ; ++c) sv[c] = Batch(rows[c]->values[size_t(blk)]);
      int64_t p = b0;
      for (; p + 2 * kLanes <= b_vec; p += 2 * kLanes) {
        if (p % 64 == 0) t.prefetch(p);
        Batch w0[NJ], w1[NJ];
        for (int c = 0; c < NJ; ++c) {
          w0[c] = load_fp8_scaled(t.at(c, p)) * sv[c];
          w1[c] = load_fp8_scaled(t.at(c, p + kLanes)) * sv[c];
        }
        for (int r = 0; r < MI; ++r) {
          const Batch a0 = Batch::load_unaligned(t.a[r] + p);
          const Batch a1 = Batch::load_unaligned(t.a[r] + p + kLanes);
          for (int c = 0; c < NJ; ++c)
            acc[r][c] = xsimd::fma(a1, w1[c], xsimd::fma(a0, w0[c], acc[r][c]));
        }
      }
      for (; p < b_vec; p += kLanes) {
        Batch wv[NJ];
        for (int c = 0; c < NJ; ++c) wv[c] = load_fp8_scaled(t.at(c, p)) * sv[c];
        for (int r = 0; r < MI; ++r) {
          const Batch av = Batch::load_unaligned(t.a[r] + p);
          for (int c = 0; c < NJ; ++c) acc[r][c] = xsimd::fma(av, wv[c], acc[r][c]);
        }
      }
    }
    t.store_acc(acc);
    t.scalar_tail(k / kLanes * kLanes, k);  // only the last block can have a scalar remainder
  }

#if defined(__x86_64__)
  // FP8 on AVX-512: a row's 64-byte unit at a time, decoded in lane order by fp8_unit_times_256
  // (the activations come in that order, `a_lane`: rows of k). The weights are scaled, w·2^8
  // times s·2^-8 (exactly w·s, as decode_segment gives the prefill path), or, in tiles of one or
  // two activation rows whose weight rows share their scales, the activations: a·(s·2^-8) times
  // w·2^8 is the same product a·(w·s) where both scalings are exact (prescales_exactly), so every
  // FMA rounds alike, for one multiply per activation row and 16 inputs in place of one per weight
  // row. (With four activation rows that measured 13% slower: the multiplies are as many then,
  // and the registers run out.) The choice is made once per tile, not per 128-input block: made
  // per block, with the scales set up per block, it had kept the gain from memory at +3% (once
  // per tile: +17%).
  template <int MI, int NJ>
  static void dot_fp8_avx512(Tile<MI, NJ>& t, const float* a_lane, const ActivationRange& range,
                             typename ScaleRows::Row* const rows[NJ]) {
    const int64_t k = t.g.k, kv = k / 64 * 64;
    // The scales are s·2^-8 (block_scales' factor). Whether the activations may take a scale row
    // is found once per chunk (the row is cached).
    const bool prescaled =
        MI <= 2 && rows[0] == rows[NJ - 1] && prescales_exactly(*rows[0], kv, range);
    float* scales[NJ];
    for (int c = 0; c < NJ; ++c) scales[c] = rows[c]->values.data();
    Batch acc[MI][NJ];
    t.load_acc(acc);
    if (prescaled)
      fp8_units<true>(t, a_lane, kv, scales, acc);
    else
      fp8_units<false>(t, a_lane, kv, scales, acc);
    t.store_acc(acc);
    t.scalar_tail(kv, k);
  }
  // Whether, for every block scale s of the row's blocks below kv (`values`: s·2^-8), a·(s·2^-8) is
  // exact for every activation a and the weights w·s of every code are exact too (448·2^119 <
  // 2^128; the smallest subnormal code, 2^-9, times 2^-118 is an exact denormal), with s·2^-8 a
  // normal number. Computed once per cached row.
  static bool prescales_exactly(typename ScaleRows::Row& row, int64_t kv,
                                const ActivationRange& range) {
    if (row.prescales < 0) {
      bool exact = true;
      for (int64_t blk = 0; exact && blk < (kv + 127) / 128; ++blk) {
        const float s = row.values[size_t(blk)];
        exact = s >= 0x1p-126f && s <= 0x1p111f && range.scales_exactly(s);
      }
      row.prescales = exact;
    }
    return row.prescales != 0;
  }
  // Inputs [0, kv) of the tile (see dot_fp8_avx512), `scales` already times 2^-8; `acc` is the
  // caller's local accumulators, always inlined so they stay in registers.
  template <bool kActivationsScaled, int MI, int NJ>
  [[gnu::always_inline]] static inline void fp8_units(const Tile<MI, NJ>& t, const float* a_lane,
                                                      int64_t kv, float* const scales[NJ],
                                                      Batch (&acc)[MI][NJ]) {
    const int64_t k = t.g.k;
    for (int64_t u0 = 0; u0 < kv; u0 += 64) {
      t.prefetch(u0);
      const int64_t offset = u0 / 64 * t.unit_stride, blk = u0 / 128;
      Batch av[MI][4];
      if constexpr (kActivationsScaled) {
        const Batch s(scales[0][blk]);
        for (int r = 0; r < MI; ++r)
          for (int j = 0; j < 4; ++j)
            av[r][j] = Batch::load_unaligned(a_lane + r * k + u0 + j * kLanes) * s;
      }
      for (int c = 0; c < NJ; ++c) {
        Batch w[4];
        fp8_unit_times_256(_mm512_loadu_si512(t.rows[c] + offset), w);
        if constexpr (!kActivationsScaled) {
          const Batch s(scales[c][blk]);
          for (auto& v : w) v = v * s;
        }
        for (int r = 0; r < MI; ++r)
          for (int j = 0; j < 4; ++j) {
            const Batch a = kActivationsScaled
                                ? av[r][j]
                                : Batch::load_unaligned(a_lane + r * k + u0 + j * kLanes);
            acc[r][c] = xsimd::fma(a, w[j], acc[r][c]);
          }
      }
    }
  }
#endif

#if defined(__x86_64__)
  // Block B of a transposed FP4 unit (`words`: word l holds byte l of each of the unit's four
  // 32-weight blocks, block b in byte b) times the block's scale (`code`): its low nibbles to
  // `lo`, its high ones to `hi`, from the table kFp4ScaledTables[code]. The zero-masked forms with
  // every lane kept: in some inlined contexts GCC 12 warns that the plain forms' undefined
  // pass-through operand is uninitialized (an error in the sanitized build).
  template <int B>
  [[gnu::always_inline]] static inline void fp4_unit_block(__m512i words, uint8_t code, Batch& lo,
                                                           Batch& hi) {
    constexpr __mmask16 kAll = 0xFFFF;
    const __m512 lut = _mm512_load_ps(kFp4ScaledTables[code].data());
    const __m512i idx = _mm512_maskz_srli_epi32(kAll, words, unsigned(8 * B));
    lo = Batch(_mm512_maskz_permutexvar_ps(kAll, idx, lut));  // the low 4 bits of each word
    hi = Batch(_mm512_maskz_permutexvar_ps(kAll, _mm512_maskz_srli_epi32(kAll, idx, 4), lut));
  }
  // f.template operator()<B>() for the unit's blocks B = 0 .. 3 in order: the block index a
  // constant, so the shifts take immediates (a loop left to the compiler was not always unrolled).
  template <class F>
  [[gnu::always_inline]] static inline void for_each_unit_block(const F& f) {
    f.template operator()<0>();
    f.template operator()<1>();
    f.template operator()<2>();
    f.template operator()<3>();
  }
#endif

#if defined(__x86_64__)
  // dot_fp4 over transposed units (tiled or row-unit layouts) on AVX-512: a row's whole unit (128
  // weights, four blocks) is loaded once and each block's low and high nibbles are two constant
  // shifts of it away, so 16 weights cost a shift and a table permute instead of a widening and a
  // permute (+10% on the in-cache FP4 GEMV here). The products and their order are dot_fp4's: the
  // same bits. Each block's table, already times its scale, is kFp4ScaledTables[code], loaded once
  // per block and row for both permutes: a scale costs a load (see there).
  template <int MI, int NJ>
  static void dot_fp4_units_avx512(Tile<MI, NJ>& t, const float* a_perm) {
    const uint8_t* codes[NJ];  // the rows' ue8m0 scale codes, one per 32 inputs
    for (int c = 0; c < NJ; ++c) codes[c] = t.g.w.scale_row(t.g.w.first_row + t.j0 + c);
    Batch acc[MI][NJ];
    t.load_acc(acc);
    const int64_t k = t.g.k;
    if constexpr (MI > 2) {
      fp4_units_many_rows(t, a_perm, codes, acc);
    } else {
      for (int64_t u0 = 0; u0 < k; u0 += 128) {
        t.prefetch(u0 / 2);
        __m512i units[NJ];
        for (int c = 0; c < NJ; ++c) units[c] = _mm512_loadu_si512(t.at(c, u0 / 2));
        for_each_unit_block([&]<int B>() {
          const int64_t p = u0 + 32 * B;
          Batch lo[NJ], hi[NJ];
          for (int c = 0; c < NJ; ++c) fp4_unit_block<B>(units[c], codes[c][p / 32], lo[c], hi[c]);
          for (int r = 0; r < MI; ++r) {
            const float* ap = a_perm + r * k + p;
            const Batch ae = Batch::load_unaligned(ap), ao = Batch::load_unaligned(ap + kLanes);
            for (int c = 0; c < NJ; ++c)
              acc[r][c] = xsimd::fma(ao, hi[c], xsimd::fma(ae, lo[c], acc[r][c]));
          }
        });
      }
    }
    t.store_acc(acc);
  }
  // dot_fp4_units_avx512 for tiles of 3-4 activation rows: their 16 accumulators and a block's
  // activations leave no registers for the NJ units and their 2·NJ decoded vectors, so a block's
  // activations are loaded once and each row's unit is decoded in turn, its vectors used at once
  // (the unit reloaded from L1 per block). The same FMAs in the same order per accumulator.
  template <int MI, int NJ>
  [[gnu::always_inline]] static inline void fp4_units_many_rows(const Tile<MI, NJ>& t,
                                                                const float* a_perm,
                                                                const uint8_t* const codes[NJ],
                                                                Batch (&acc)[MI][NJ]) {
    const int64_t k = t.g.k;
    for (int64_t u0 = 0; u0 < k; u0 += 128) {
      t.prefetch(u0 / 2);
      for_each_unit_block([&]<int B>() {
        const int64_t p = u0 + 32 * B;
        Batch ae[MI], ao[MI];
        for (int r = 0; r < MI; ++r) {
          ae[r] = Batch::load_unaligned(a_perm + r * k + p);
          ao[r] = Batch::load_unaligned(a_perm + r * k + p + kLanes);
        }
        for (int c = 0; c < NJ; ++c) {
          Batch lo, hi;
          fp4_unit_block<B>(_mm512_loadu_si512(t.at(c, u0 / 2)), codes[c][p / 32], lo, hi);
          for (int r = 0; r < MI; ++r)
            acc[r][c] = xsimd::fma(ao[r], hi, xsimd::fma(ae[r], lo, acc[r][c]));
        }
      });
    }
  }
#endif

  // FP4: activations come pre-permuted (`a_perm` rows of k: per group of 2·kLanes inputs, the
  // even ones then the odd ones) so the low and high nibbles of kLanes bytes meet two vectors.
  // Both vectors come out of the table times the block scale (exact: a power of two), then one
  // FMA each per activation row.
  template <int MI, int NJ, bool Transposed>
  static void dot_fp4(Tile<MI, NJ>& t, ScaleRows& cache, const float* a_perm) {
    const int64_t k = t.g.k, group = 2 * kLanes;
    const int64_t n_blocks = k / 32, k_vec = n_blocks * 32;  // whole scale blocks: vector path
#if defined(__x86_64__)
    if constexpr (Transposed && kAvx512) {
      dot_fp4_units_avx512(t, a_perm);
      return;  // rows in units are whole units: no scalar tail
    }
#endif
    typename ScaleRows::Row* rows[NJ];
    block_scales(t, cache, n_blocks, 1.0f, rows);
    Batch acc[MI][NJ];
    t.load_acc(acc);
    for (int64_t b0 = 0, blk = 0; b0 < k_vec; b0 += 32, ++blk) {
      if (b0 % 128 == 0) t.prefetch(b0 / 2);  // 128 FP4 weights = one 64-byte line per row
      for (int64_t p = b0; p < b0 + 32; p += group) {
        Batch lo[NJ], hi[NJ];
        for (int c = 0; c < NJ; ++c)
          fp4_pair_in_unit<Transposed>(t.at(c, p / 2 / 64 * 64), p, rows[c]->values[size_t(blk)],
                                       lo[c], hi[c]);
        for (int r = 0; r < MI; ++r) {
          const float* ap = a_perm + r * k + p;
          const Batch ae = Batch::load_unaligned(ap), ao = Batch::load_unaligned(ap + kLanes);
          for (int c = 0; c < NJ; ++c)
            acc[r][c] = xsimd::fma(ao, hi[c], xsimd::fma(ae, lo[c], acc[r][c]));
        }
      }
    }
    t.store_acc(acc);
    t.scalar_tail(k_vec, k);
  }

  template <int MI, int NJ>
  static void dot_tile(const GemmArgs& g, int64_t i0, int64_t j0, const RegisterInputs& in,
                       ScaleRows& scales) {
    Tile<MI, NJ> t(g, i0, j0, in.prefetch);
    switch (g.w.format) {
      case WeightFormat::kF32:
        dot_plain<WeightFormat::kF32>(t);
        break;
      case WeightFormat::kBF16:
        dot_plain<WeightFormat::kBF16>(t);
        break;
      case WeightFormat::kFp8Block:
        dot_fp8(t, scales, in.lane_order + i0 * g.k, in.range);
        break;
      case WeightFormat::kFp4Block:
        if (g.w.in_units())
          dot_fp4<MI, NJ, true>(t, scales, in.lane_order + i0 * g.k);
        else
          dot_fp4<MI, NJ, false>(t, scales, in.lane_order + i0 * g.k);
        break;
      default:
        break;
    }
    t.finish();
  }
  static void dot_any(const GemmArgs& g, int64_t i0, int64_t mi, int64_t j0, int64_t nj,
                      const RegisterInputs& in, ScaleRows& scales) {
    with_count<kTile>(mi, [&]<int MI>() {
      with_count<kTile>(nj, [&]<int NJ>() { dot_tile<MI, NJ>(g, i0, j0, in, scales); });
    });
  }

  // The order in which the lanes meet the inputs: vector j of each group of lane_stride·kLanes
  // inputs holds inputs j, j + stride, j + 2·stride, ... of the group, so a decoder that yields
  // `stride` vectors from one load needs no shuffle across lanes. FP4: the low and the high
  // nibbles of kLanes bytes; FP8 on AVX-512: the four bytes of each 32-bit lane of a 64-byte unit
  // (fp8_unit_times_256); 1, the inputs' own order, for the rest. The activations are put in this
  // order once per call (lane_order_row), and decode_rows stores the decoded weights in it.
  static constexpr int64_t lane_stride(WeightFormat format) {
    if (format == WeightFormat::kFp4Block) return 2;
    return kAvx512 && format == WeightFormat::kFp8Block ? 4 : 1;
  }

  // Activation row i's vector inputs in lane order. Vector v (lane-ordered inputs
  // [v·kLanes, (v + 1)·kLanes)) goes to dst + v·vector_stride.
  static void lane_order_row(const GemmArgs& g, int64_t i, float* dst, int64_t vector_stride) {
    const float* src = g.a + i * g.lda;
    const int64_t stride = lane_stride(g.w.format), group = stride * kLanes, n = vector_inputs(g);
    for (int64_t first = 0; first < n; first += group)
      lane_order_group(src + first, stride, dst + first / kLanes * vector_stride, vector_stride);
  }
  // One group of stride·kLanes inputs at `src` in lane order: vector j (to dst + j·vector_stride)
  // holds inputs j, j + stride, j + 2·stride, ... Two-source permutes on AVX-512, where the
  // scalar copy had cost the in-cache FP4 GEMV (one row of k floats per call) about 3%.
  static void lane_order_group(const float* src, int64_t stride, float* dst,
                               int64_t vector_stride) {
#if defined(__x86_64__)
    if constexpr (kAvx512) {
      if (stride == 2) {
        const __m512 a = _mm512_loadu_ps(src), b = _mm512_loadu_ps(src + 16);
        const __m512i even =
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        _mm512_storeu_ps(dst, _mm512_permutex2var_ps(a, even, b));
        _mm512_storeu_ps(
            dst + vector_stride,
            _mm512_permutex2var_ps(a, _mm512_add_epi32(even, _mm512_set1_epi32(1)), b));
        return;
      }
      if (stride == 4) {
        // Lanes 0-7 of vector j from the first 32 inputs, lanes 8-15 from the next 32.
        const __m512 a0 = _mm512_loadu_ps(src), a1 = _mm512_loadu_ps(src + 16);
        const __m512 a2 = _mm512_loadu_ps(src + 32), a3 = _mm512_loadu_ps(src + 48);
        const __m512i fourth =
            _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
        for (int j = 0; j < 4; ++j) {
          const __m512i idx = _mm512_add_epi32(fourth, _mm512_set1_epi32(j));
          const __m512 low = _mm512_permutex2var_ps(a0, idx, a1);
          const __m512 high = _mm512_permutex2var_ps(a2, idx, a3);
          _mm512_storeu_ps(dst + j * vector_stride, _mm512_shuffle_f32x4(low, high, 0x44));
        }
        return;
      }
    }
#endif
    for (int64_t j = 0; j < stride; ++j)
      for (int64_t l = 0; l < kLanes; ++l) dst[j * vector_stride + l] = src[stride * l + j];
  }

  // Below this many multiply-adds a GEMM runs on one thread: forking costs more than it saves.
  // Waking a sleeping worker can cost tens of microseconds on a shared VM (measured here: decode of
  // a small model ran 13x slower on 2 threads than on 1 with a 2^18 threshold), so only GEMMs of
  // about a millisecond of work or more fork. A GEMV streaming a megabyte of weights or more forks
  // whatever its multiply-adds: alone it takes 50–100 µs of one core's bandwidth (the V4-Flash
  // slice's wkv, HCA compressors and router had run on one core while the other waited).
  static constexpr int64_t kParallelMacs = int64_t(1) << 21;
  static constexpr size_t kParallelWeightBytes = size_t(1) << 20;

  // Up to this many activation rows, W is decoded in registers as it streams by; beyond, each
  // block of W rows is decoded once into a buffer and shared by every row tile (the decode would
  // otherwise be repeated per row tile and set the pace). Both give the same bits, so this is a
  // speed choice only, measured per format with bench_gemm on expert-sized matrices (2048×4096,
  // 2 threads, interleaved): FP8 per CPU (fp8_register_rows: 4 on Zen 4, 16 on Intel's cores);
  // BF16 in registers stays as fast or faster up to 16. FP4 on AVX-512, since tiles of 3-4 rows
  // decode whole units (fp4_units_many_rows), is 23% faster in registers at 12 rows and 13% at
  // 16, as fast at 24 and 32 (Intel Xeon host, row units); elsewhere it had been 20% faster in the
  // buffer at 12 rows and 9% at 16 but 20% slower at 8.
  static int64_t register_rows_limit(WeightFormat format) {
    switch (format) {
      case WeightFormat::kFp8Block:
        return fp8_register_rows();
      case WeightFormat::kFp4Block:
        return kAvx512 ? 16 : 8;
      default:
        return 16;
    }
  }

  static bool parallel(const GemmArgs& g) {
    return (g.m * g.n * g.k > kParallelMacs || g.w.data_bytes() >= kParallelWeightBytes) &&
           may_fork();
  }

  // Whole tiles of about `chunk` bytes (gemm_chunk_bytes), at least one.
  static int64_t tiles_per_chunk(const GemmArgs& g, int64_t chunk) {
    return std::max<int64_t>(1, chunk / std::max<int64_t>(1, kTile * g.w.row_bytes()));
  }

  // One chunk of the register path's work: weight tiles [tile_begin, tile_end) of GEMM `gemm`
  // of a group, for all its activation rows.
  struct TileChunk {
    int64_t gemm, tile_begin, tile_end;
  };
  static void run_chunk(const GemmArgs& g, const TileChunk& chunk, const RegisterInputs& in) {
    ScaleRows& scales = scale_rows();
    scales.clear();
    for (int64_t jt = chunk.tile_begin; jt < chunk.tile_end; ++jt) {
      const int64_t j0 = jt * kTile;
      const int64_t nj = std::min(kTile, g.n - j0);
      for (int64_t i0 = 0; i0 < g.m; i0 += kTile)
        dot_any(g, i0, std::min(kTile, g.m - i0), j0, nj, in, scales);
    }
  }

  // What the register tiles of g read besides GemmArgs; where lane_stride > 1, its lane-ordered
  // activations (m·k floats) go to `lane_order`.
  static RegisterInputs register_inputs(const GemmArgs& g, float* lane_order) {
    RegisterInputs in;
    in.prefetch = gemv_prefetch(g.w.format, g.w.layout);
    if (lane_stride(g.w.format) > 1) {
      for (int64_t i = 0; i < g.m; ++i) lane_order_row(g, i, lane_order + i * g.k, kLanes);
      in.lane_order = lane_order;
    }
    // Only tiles of one or two rows read it (prescales_exactly).
    if (kAvx512 && g.w.format == WeightFormat::kFp8Block && g.m <= 2)
      in.range = activation_range(g);
    return in;
  }
  // Where the vector of `kv` lane-ordered inputs starting at p (a multiple of kLanes) of row r
  // lies when rows are interleaved in groups of R: each group's rows alternate vector by vector
  // (row 0's first vector, row 1's first, ..., row 0's second, ...), so a tile of R rows reads one
  // sequential stream at constant offsets (its row pointers had not fitted in the registers).
  template <int64_t R>
  static int64_t interleaved(int64_t r, int64_t p, int64_t kv) {
    return r / R * R * kv + p * R + r % R * kLanes;
  }

  // The vector part of W rows [j0, j0 + nj) as the tiles see it after decoding and scaling,
  // interleaved in groups of kTile rows: the lane values for lane-ordered inputs p .. p + kLanes
  // - 1 of row c (see lane_stride) are at out + interleaved<kTile>(c, p, kv). The scalar tails
  // stay with WeightView::at.
  static void decode_rows(const WeightView& w, int64_t j0, int64_t nj, int64_t kv, float* out) {
    // A group of interleaved rows (WeightView::group_rows) 64 bytes of codes at a time, row after
    // row, so they are read as the one stream they are stored as: a tiled group's rows together
    // (each row's units lie 256 bytes apart), other layouts' rows one at a time, each a stream of
    // its own (read 64 bytes of each of four rows at a time, FP4 rows of 2 KiB had decoded 18%
    // slower than tiled ones).
    static_assert(WeightView::kTileRows <= kTile);
    const int64_t segment = segment_inputs(w.format), group = w.group_rows();
    for (int64_t c0 = 0; c0 < nj; c0 += group) {
      const int64_t c1 = std::min(nj, c0 + group);
      StoredRow rows[kTile];
      const uint8_t* scales[kTile] = {};
      for (int64_t c = c0; c < c1; ++c) {
        rows[c - c0] = w.stored_row(j0 + c);
        scales[c - c0] = row_scale_codes(w, j0 + c);
      }
      for (int64_t p0 = 0; p0 < kv; p0 += segment)
        for (int64_t c = c0; c < c1; ++c)
          decode_segment(w.format, rows[c - c0], scales[c - c0], p0, std::min(kv, p0 + segment),
                         [&](int64_t p) { return out + interleaved<kTile>(c, p, kv); });
    }
  }
  // The inputs decode_segment takes at once: those of 64 bytes of codes.
  static int64_t segment_inputs(WeightFormat format) {
    return 512 / weight_format_traits(format).bits_per_weight;
  }
  // W row j's row of block scale codes (FP8: its 128-row block's), null for unscaled formats.
  static const uint8_t* row_scale_codes(const WeightView& w, int64_t j) {
    const int64_t rows_per_scale = weight_format_traits(w.format).block_out;
    return rows_per_scale > 0 ? w.scale_row((w.first_row + j) / rows_per_scale) : nullptr;
  }
  // Vectors [p0, p1) of one row (decode_rows), each stored at dst(p).
  template <class Dst>
  static void decode_segment(WeightFormat format, const StoredRow& row, const uint8_t* scales,
                             int64_t p0, int64_t p1, const Dst& dst) {
    switch (format) {
      case WeightFormat::kF32:
        for (int64_t p = p0; p < p1; p += kLanes) load_f32(row.at(p * 4)).store_aligned(dst(p));
        break;
      case WeightFormat::kBF16:
        for (int64_t p = p0; p < p1; p += kLanes) load_bf16(row.at(p * 2)).store_aligned(dst(p));
        break;
      case WeightFormat::kFp8Block: {  // a segment lies inside one 128-input scale block
        const float s = ue8m0_to_float(scales[p0 / 128]);
#if defined(__x86_64__)
        if constexpr (kAvx512) {  // a segment is one 64-input unit: four vectors in lane order
          Batch w[4];
          fp8_unit_times_256(_mm512_loadu_si512(row.at(p0)), w);
          for (int j = 0; j < 4; ++j)
            (w[j] * Batch(s / kFp8ViaFp16Factor)).store_aligned(dst(p0 + j * kLanes));
          break;
        }
#endif
        const Batch sv(s * kFp8ViaFp16Factor);
        for (int64_t p = p0; p < p1; p += kLanes)
          Batch(load_fp8_scaled(row.at(p)) * sv).store_aligned(dst(p));
        break;
      }
      case WeightFormat::kFp4Block:
#if defined(__x86_64__)
        if constexpr (kAvx512) {
          if (row.transposed) {  // a segment is one whole unit (rows in units have no others)
            fp4_unit_scaled(row.at(p0 / 2), scales + p0 / 32,
                            [&](int j) { return dst(p0 + j * kLanes); });
            break;
          }
        }
#endif
        for (int64_t p = p0; p < p1; p += 2 * kLanes) {
          Batch lo, hi;
          const float scale = ue8m0_to_float(scales[p / 32]);
          const uint8_t* unit = row.at(p / 2 / 64 * 64);
          if (row.transposed)
            fp4_pair_in_unit<true>(unit, p, scale, lo, hi);
          else
            fp4_pair_in_unit<false>(unit, p, scale, lo, hi);
          lo.store_aligned(dst(p));
          hi.store_aligned(dst(p + kLanes));
        }
        break;
      default:
        break;
    }
  }

#if defined(__x86_64__)
  // The 128 weights of a transposed FP4 unit (tiled or row-unit layouts) times their four blocks'
  // scales (`codes`), decoded as dot_fp4_units_avx512 decodes them (fp4_unit_block). Vector j
  // (block j / 2, its low nibbles for even j) goes to out(j). The values are
  // load_fp4_pair's (a table row is the multiply's products), so the bits are the same; per unit
  // a load and four table loads where that decoder had taken a variable shift, a table multiply
  // and the unit's address arithmetic per 32 weights (a fifth of the slice's prefill time).
  template <class Out>
  [[gnu::always_inline]] static inline void fp4_unit_scaled(const uint8_t* unit,
                                                            const uint8_t* codes, const Out& out) {
    const __m512i words = _mm512_loadu_si512(unit);
    for_each_unit_block([&]<int B>() {
      Batch lo, hi;
      fp4_unit_block<B>(words, codes[B], lo, hi);
      lo.store_aligned(out(2 * B));
      hi.store_aligned(out(2 * B + 1));
    });
  }
#endif

  // ---- prefill on SSE2: register tiles over decoded rows, blocked along k ----
  // A tile of kPanelRows activation rows × kTile weight rows needs kPanelRows + kTile vector loads
  // per kPanelRows·kTile FMAs. Streaming both operands over the whole of k made the loads come from
  // L2 and set the pace at about half the FMA peak; so k is cut into kDepth-long slices: a tile's
  // activation slice (a panel) stays in L1 while the block's decoded weight rows pass over it, and
  // the lane-wise partial sums wait in memory between slices (exactly: stores and loads do not
  // round). The panel and the block's weight tiles are each interleaved (see interleaved()), so a
  // tile reads two contiguous streams: rows 4 KiB apart had fallen into the same L1 sets and
  // evicted the panel. Each output's lanes still accumulate over k in ascending order, then one
  // horizontal sum and the scalar tail, as in the register path: the same bits for any m, tiling or
  // slicing.
  static constexpr int kPanelRows = int(kTile);
  static constexpr int64_t kDepth = 1024;
  static constexpr int64_t kRowGroup = 8 * kPanelRows;  // rows whose partial sums wait in memory

  // Activation rows whose partial sums wait in memory at once: a whole group when k has several
  // slices; one panel when it has one (nothing waits between slices then, so the sums buffer stays
  // small: its size is part of a session's working memory).
  static int64_t row_group(const GemmArgs& g) {
    return vector_inputs(g) > kDepth ? kRowGroup : kPanelRows;
  }

  // Inputs [0, vector_inputs) go through the lanes, whole lane-order groups (FP4: whole scale
  // blocks); the rest is the format's scalar tail. F16, which decode_segment does not decode (the
  // GEMM refuses it; the indexer kernel reads any view), is all tail.
  static int64_t vector_inputs(const GemmArgs& g) { return vector_inputs(g.w.format, g.k); }
  static int64_t vector_inputs(WeightFormat format, int64_t k) {
    if (format == WeightFormat::kF16) return 0;
    const int64_t group = format == WeightFormat::kFp4Block ? 32 : lane_stride(format) * kLanes;
    return k / group * group;
  }

  // Partial sums of MI panel rows × NJ decoded weight rows over `n` inputs, continuing from `sums`
  // (row stride `sums_stride` floats) unless `first`. `panel` and `w` point at the slice's first
  // vector in their interleaved layouts (kPanelRows and kTile rows per group).
  template <int MI, int NJ>
  static void panel_tile(const float* panel, const float* w, int64_t n, float* sums,
                         int64_t sums_stride, bool first) {
    Batch acc[MI][NJ];
    for (int r = 0; r < MI; ++r)
      for (int c = 0; c < NJ; ++c)
        acc[r][c] = first ? Batch(0.0f) : Batch::load_aligned(sums + r * sums_stride + c * kLanes);
    for (int64_t p = 0; p < n; p += kLanes) {
      Batch wv[NJ];
      for (int c = 0; c < NJ; ++c) wv[c] = Batch::load_aligned(w + p * kTile + c * kLanes);
      for (int r = 0; r < MI; ++r) {
        const Batch av = Batch::load_aligned(panel + p * kPanelRows + r * kLanes);
        for (int c = 0; c < NJ; ++c) acc[r][c] = xsimd::fma(av, wv[c], acc[r][c]);
      }
    }
    for (int r = 0; r < MI; ++r)
      for (int c = 0; c < NJ; ++c) acc[r][c].store_aligned(sums + r * sums_stride + c * kLanes);
  }

  // The horizontal sums of 16 consecutive vectors at `v`, out[o] = the sum of v[o], added in
  // xsimd::hadd's order (lanes i and i + 8, then i and i + 4, then the pairs (0, 1) and (2, 3),
  // then the two pair sums), so the bits are Tile::finish's; fp addition commutes, so only the
  // pairing matters. Four levels of shuffles across the 16 vectors instead of a dependent
  // shuffle chain per output (that chain had cost a sixth of the lane-wise prefill's time). The
  // attention kernel's score tiles use it.
  static void hadd16(const float* v, float* out) {
#if defined(__x86_64__)
    if constexpr (kAvx512) {
      // The zero-masked forms with every lane kept: GCC 12 warns that the plain forms' undefined
      // pass-through operand is uninitialized.
      constexpr __mmask16 kAll = 0xFFFF;
      __m512 half[8], quarter[4], pair[2];
      for (int q = 0; q < 8; ++q) {  // lanes 0-7: v[2q] i + (i + 8); lanes 8-15: v[2q + 1]'s
        const __m512 x = _mm512_load_ps(v + 32 * q), y = _mm512_load_ps(v + 32 * q + 16);
        half[q] = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(kAll, x, y, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_maskz_shuffle_f32x4(kAll, x, y, _MM_SHUFFLE(3, 2, 3, 2)));
      }
      for (int q = 0; q < 4; ++q)  // 128-bit lane L: v[4q + L]'s i + (i + 4), i < 4
        quarter[q] = _mm512_add_ps(
            _mm512_maskz_shuffle_f32x4(kAll, half[2 * q], half[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0)),
            _mm512_maskz_shuffle_f32x4(kAll, half[2 * q], half[2 * q + 1],
                                       _MM_SHUFFLE(3, 1, 3, 1)));
      for (int q = 0; q < 2; ++q)  // per 128-bit lane: (0 + 1), (2 + 3) of two vectors
        pair[q] = _mm512_add_ps(_mm512_maskz_shuffle_ps(kAll, quarter[2 * q], quarter[2 * q + 1],
                                                        _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_maskz_shuffle_ps(kAll, quarter[2 * q], quarter[2 * q + 1],
                                                        _MM_SHUFFLE(3, 1, 3, 1)));
      // Element 4L + s now holds the sum of v[4s + L].
      const __m512 sums =
          _mm512_add_ps(_mm512_maskz_shuffle_ps(kAll, pair[0], pair[1], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_maskz_shuffle_ps(kAll, pair[0], pair[1], _MM_SHUFFLE(3, 1, 3, 1)));
      const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
      _mm512_storeu_ps(out, _mm512_maskz_permutexvar_ps(kAll, order, sums));
      return;
    }
#endif
    for (int o = 0; o < 16; ++o) out[o] = xsimd::hadd(Batch::load_aligned(v + o * kLanes));
  }

  // The finished outputs of rows [i_begin, i_end) × weight rows [j_begin, j_end): each partial
  // sum's horizontal sum plus its scalar tail, stored as Tile::finish stores them.
  static void finish_rows(const GemmArgs& g, int64_t i_begin, int64_t i_end, int64_t j_begin,
                          int64_t j_end, const float* sums, int64_t stride, int64_t kv) {
    alignas(64) float h[16];
    for (int64_t i = i_begin; i < i_end; ++i) {
      const float* row = sums + (i - i_begin) * stride;
      for (int64_t j = j_begin; j < j_end; ++j) {
        h[0] = kv > 0 ? xsimd::hadd(Batch::load_aligned(row + (j - j_begin) * kLanes)) : 0.0f;
        finish_outputs(g, i, j, 1, h, kv);
      }
    }
  }

  // Outputs (i, j) .. (i, j + n - 1), n at most 16, from the horizontal sums of their lane-wise
  // partial sums (`h`, aligned): plus the scalar tail, stored as Tile::finish stores them.
  static void finish_outputs(const GemmArgs& g, int64_t i, int64_t j, int64_t n, float* h,
                             int64_t kv) {
    // The tail is added even when empty (+0.0f turns a -0 sum into +0, as Tile::finish does).
    if (kv < g.k) {
      for (int64_t o = 0; o < n; ++o) h[o] += scalar_tail_sum(g, i, j + o, kv, g.k);
    } else {
      for (int64_t o = 0; o < n; ++o) h[o] += 0.0f;
    }
    if (n == 16) {
      store16(g, i, j, h);
    } else {
      for (int64_t o = 0; o < n; ++o) store(g, i, j + o, h[o]);
    }
  }

  // store() for outputs (i, j) .. (i, j + 15) at once: the same operations per lane, so the same
  // bits (a per-output store had cost 6% of the prefill time).
  static void store16(const GemmArgs& g, int64_t i, int64_t j, const float* sums) {
    if constexpr (kLanes == 16) {
      float* c = g.c + i * g.ldc + j;
      const Batch beta_c = g.beta == 0.0f ? Batch(0.0f) : Batch(g.beta) * Batch::load_unaligned(c);
      (Batch(g.alpha) * Batch::load_aligned(sums) + beta_c).store_unaligned(c);
    } else {
      for (int64_t o = 0; o < 16; ++o) store(g, i, j + o, sums[o]);
    }
  }

  // Calls f.template operator()<MI, NJ>(i0, j0) for every tile of rows [i_begin, i_end) × weight
  // rows [j_begin, j_end).
  template <class F>
  static void for_each_tile(int64_t i_begin, int64_t i_end, int64_t j_begin, int64_t j_end, F&& f) {
    for (int64_t i0 = i_begin; i0 < i_end; i0 += kPanelRows)
      for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile)
        with_count<kPanelRows>(std::min<int64_t>(kPanelRows, i_end - i0), [&]<int MI>() {
          with_count<kTile>(std::min(kTile, j_end - j0),
                            [&]<int NJ>() { f.template operator()<MI, NJ>(i0, j0); });
        });
  }

  // Prefetches the `n` floats at `first` to L2 in `steps` about equal parts.
  class PanelPrefetch {
   public:
    PanelPrefetch(const float* first, int64_t n, int64_t steps)
        : next_(first),
          end_(first + n),
          per_step_(((n + 15) / 16 + steps - 1) / std::max<int64_t>(steps, 1)) {}
    void step() {
      for (int64_t l = 0; l < per_step_ && next_ < end_; ++l, next_ += 16)
        __builtin_prefetch(next_, 0, 2);
    }

   private:
    const float* next_;
    const float* end_;
    int64_t per_step_;
  };

  // Rows [j_begin, j_end) of C for every activation row, from the block's decoded weight rows
  // (decode_rows). `a` is the activations in lane order, interleaved in panels of kPanelRows rows
  // (interleaved<kPanelRows>); `sums` holds the partial sums (row_group × (j_end - j_begin)
  // vectors).
  static void multiply_decoded_block(const GemmArgs& g, const float* a, int64_t j_begin,
                                     int64_t j_end, const float* decoded, float* sums) {
    const int64_t kv = vector_inputs(g), stride = (j_end - j_begin) * kLanes;
    const int64_t tiles = (j_end - j_begin + kTile - 1) / kTile;  // per panel
    const int64_t group = row_group(g);
    for (int64_t ig = 0; ig < g.m; ig += group) {
      const int64_t ig_end = std::min(g.m, ig + group);
      for (int64_t p0 = 0; p0 < kv; p0 += kDepth) {
        const int64_t n = std::min(kv - p0, kDepth);
        for (int64_t i0 = ig; i0 < ig_end; i0 += kPanelRows) {
          const int64_t mi = std::min<int64_t>(kPanelRows, ig_end - i0);
          // Comes into L1 with the first tile.
          const float* panel = a + interleaved<kPanelRows>(i0, p0, kv);
          // The next panel comes from L3 (A is read once per block of W): fetched to L2 a few
          // lines per tile while this panel runs.
          const bool has_next = i0 + mi < ig_end;
          PanelPrefetch next(has_next ? a + interleaved<kPanelRows>(i0 + mi, p0, kv) : panel,
                             has_next ? n * kPanelRows : 0, tiles);
          for_each_tile(i0, i0 + mi, j_begin, j_end, [&]<int MI, int NJ>(int64_t, int64_t j0) {
            next.step();
            panel_tile<MI, NJ>(panel, decoded + interleaved<kTile>(j0 - j_begin, p0, kv), n,
                               sums + (i0 - ig) * stride + (j0 - j_begin) * kLanes, stride,
                               p0 == 0);
          });
        }
      }
      finish_rows(g, ig, ig_end, j_begin, j_end, sums, stride, kv);
    }
  }

  // Weight rows per decoded block: at most about 512 KiB of fp32, so the block stays in L2 while
  // every activation panel passes over it, and as many blocks as a multiple of the threads (one
  // block more than a thread's share had left a core idle for a ninth of the call).
  static constexpr int64_t kMaxBlockRows = 256;  // short rows: keeps the partial sums small
  static int64_t decoded_block_rows(const GemmArgs& g, int64_t unit) {
    const int64_t most = std::clamp<int64_t>(
        (int64_t(512) << 10) / (4 * std::max<int64_t>(vector_inputs(g), 1)), unit, kMaxBlockRows);
    const int64_t threads = parallel(g) ? omp_get_max_threads() : 1;
    const int64_t blocks = ((g.n + most - 1) / most + threads - 1) / threads * threads;
    const int64_t rows = (g.n + blocks - 1) / blocks;
    return std::min(most / unit * unit, (rows + unit - 1) / unit * unit);
  }

  // The activations are first put in lane order once per call, interleaved in panels: the panels
  // are read from there directly. (Copying each panel into an L1 buffer, once per block of W, had
  // cost 8% of the time.)
  static void run_decoded(const GemmArgs& g) {
#if defined(__x86_64__)
    if constexpr (kStrips) {
      run_strips(g);
      return;
    }
#endif
    const int64_t block = decoded_block_rows(g, kTile), kv = vector_inputs(g);
    const int64_t panels = (g.m + kPanelRows - 1) / kPanelRows;
    const size_t decoded_floats = size_t(block * kv);
    run_blocks(
        g, block, panels * kPanelRows * kv, g.m,
        [&](int64_t i, float* a) {
          lane_order_row(g, i, a + interleaved<kPanelRows>(i, 0, kv), kPanelRows * kLanes);
        },
        decoded_floats + size_t(row_group(g) * block * kLanes),  // the block and the partial sums
        [&](int64_t j_begin, int64_t j_end, const float* a, float* decoded) {
          decode_rows(g.w, j_begin, j_end - j_begin, kv, decoded);
          multiply_decoded_block(g, a, j_begin, j_end, decoded, decoded + decoded_floats);
        });
  }

  // The prefill's schedule, both paths: the activations rearranged once per call (`arrange(q,
  // a)` for q in [0, pieces), split evenly across the threads, into `a_floats` floats), then the
  // blocks of `block` weight rows handed out first come first served, `multiply(j_begin, j_end,
  // a, scratch)` with a per-thread scratch of `scratch_floats` that lives as long as the thread.
  template <class Arrange, class Multiply>
  static void run_blocks(const GemmArgs& g, int64_t block, int64_t a_floats, int64_t pieces,
                         const Arrange& arrange, size_t scratch_floats, const Multiply& multiply) {
    const int64_t n_blocks = (g.n + block - 1) / block;
    thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> arranged;
    if (arranged.size() < size_t(a_floats)) arranged.resize(size_t(a_floats));
    float* a = arranged.data();
    ParallelGuard guard;
#pragma omp parallel if (parallel(g))
    {
#pragma omp for schedule(static)
      for (int64_t q = 0; q < pieces; ++q) arrange(q, a);
      thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> scratch;
      float* own = nullptr;
      guard.run([&] {
        if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
        own = scratch.data();
      });
#pragma omp for schedule(dynamic)
      for (int64_t jb = 0; jb < n_blocks; ++jb) {
        if (!own) continue;  // this thread's scratch failed; the guard has the error
        const int64_t j_begin = jb * block;
        multiply(j_begin, std::min(g.n, j_begin + block), a, own);
      }
    }
    guard.rethrow();
  }

#if defined(__x86_64__)
  // ---- prefill on AVX-512 and AVX2: lane planes and broadcast tiles ----
  // A lane-wise tile (panel_tile) loads a vector of activations or of weights for every two or
  // three FMAs; on the Intel host it ran at about 70% of the FMA peak even with everything in L1,
  // where a tile that broadcasts one activation to two vectors of weights ran at 88%. Its lanes
  // are kLanes outputs instead of kLanes inputs, yet each output keeps the register path's bits:
  // lane l of an output's lane-wise sum is the FMA chain over the lane-ordered inputs
  // q = kLanes·t + l, t ascending from +0, and the horizontal sum adds the chains in a fixed tree
  // (xsimd::hadd's; AVX-512: chains l and l + 8, then those sums 4 apart, then (0, 1) and (2, 3)
  // of those, then the two; AVX2: chains l and l + 4, then (0, 1) and (2, 3), then the two). So
  // both operands are laid out in planes, plane l holding the inputs of chain l (in_planes), a
  // tile runs chain l for kPanel activation rows × kStripRows outputs, and adds the chains as
  // they come, in an order that closes the tree's sums (kTreeOrder): the same FMAs and the same
  // additions as the register path.
  static constexpr bool kStrips = kAvx512 || kAvx2;
  // Activation rows per tile: 2·kPanel accumulators, two vectors of weights and a broadcast in
  // the 32 (AVX-512) or 16 (AVX2) vector registers.
  static constexpr int kPanel = kAvx512 ? 12 : 6;
  static constexpr int64_t kStripRows = 2 * kLanes;  // weight rows per tile
  // The horizontal sum's tree (AVX-512 and AVX2 only): its depth, and the planes in an order
  // whose pairs close its sums as they come.
  static constexpr int kTreeLevels = kLanes == 16 ? 4 : 3;
  static constexpr std::array<int, kLanes> kTreeOrder = [] {
    std::array<int, kLanes> order{};
    constexpr int k16[16] = {0, 8, 4, 12, 1, 9, 5, 13, 2, 10, 6, 14, 3, 11, 7, 15};
    constexpr int k8[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    for (int64_t s = 0; s < kLanes; ++s) order[size_t(s)] = kLanes == 16 ? k16[s] : k8[s];
    return order;
  }();

  // Where lane-ordered input q = kLanes·t + l of row r lies in a plane layout of groups of R rows
  // (the activation panels: R = kPanel; the weight strips: R = kStripRows): per group, plane l
  // holds step t of its R rows together, steps in order.
  template <int64_t R>
  static int64_t in_planes(int64_t r, int64_t t, int64_t l, int64_t kv) {
    return r / R * R * kv + (l * (kv / kLanes) + t) * R + r % R;
  }

  // v[r] lane c to v[c] lane r: 32-bit, then 64-bit interleaves within 128-bit lanes, then two
  // rounds of 128-bit lane shuffles (64 shuffles). The zero-masked forms with every lane kept:
  // GCC 12 warns that the plain forms' undefined pass-through operand is uninitialized.
  [[gnu::always_inline]] static inline void transpose16(__m512 (&v)[16]) {
    constexpr __mmask16 kAll = 0xFFFF;
    constexpr __mmask8 kAll64 = 0xFF;
    __m512 a[16], b[16];
    for (int k = 0; k < 8; ++k) {
      a[2 * k] = _mm512_maskz_unpacklo_ps(kAll, v[2 * k], v[2 * k + 1]);
      a[2 * k + 1] = _mm512_maskz_unpackhi_ps(kAll, v[2 * k], v[2 * k + 1]);
    }
    // b[4k + c], 128-bit lane L: rows 4k .. 4k + 3 of column 4L + c.
    for (int k = 0; k < 4; ++k)
      for (int h = 0; h < 2; ++h) {
        const __m512d x = _mm512_castps_pd(a[4 * k + h]), y = _mm512_castps_pd(a[4 * k + h + 2]);
        b[4 * k + 2 * h] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll64, x, y));
        b[4 * k + 2 * h + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll64, x, y));
      }
    for (int c = 0; c < 4; ++c) {
      const __m512 d0 = _mm512_maskz_shuffle_f32x4(kAll, b[c], b[4 + c], 0x44);
      const __m512 d1 = _mm512_maskz_shuffle_f32x4(kAll, b[c], b[4 + c], 0xEE);
      const __m512 d2 = _mm512_maskz_shuffle_f32x4(kAll, b[8 + c], b[12 + c], 0x44);
      const __m512 d3 = _mm512_maskz_shuffle_f32x4(kAll, b[8 + c], b[12 + c], 0xEE);
      v[c] = _mm512_maskz_shuffle_f32x4(kAll, d0, d2, 0x88);
      v[4 + c] = _mm512_maskz_shuffle_f32x4(kAll, d0, d2, 0xDD);
      v[8 + c] = _mm512_maskz_shuffle_f32x4(kAll, d1, d3, 0x88);
      v[12 + c] = _mm512_maskz_shuffle_f32x4(kAll, d1, d3, 0xDD);
    }
  }

  // v[r] lane c to v[c] lane r for 8 vectors of 8: 32-bit, then 64-bit interleaves within
  // 128-bit lanes, then 128-bit lane swaps (24 shuffles).
  [[gnu::always_inline]] static inline void transpose8(__m256 (&v)[8]) {
    __m256 a[8], b[8];
    for (int k = 0; k < 4; ++k) {
      a[2 * k] = _mm256_unpacklo_ps(v[2 * k], v[2 * k + 1]);
      a[2 * k + 1] = _mm256_unpackhi_ps(v[2 * k], v[2 * k + 1]);
    }
    // b[4h + c], 128-bit lane L: rows 4h .. 4h + 3 of column 4L + c.
    for (int h = 0; h < 2; ++h)
      for (int u = 0; u < 2; ++u) {
        b[4 * h + 2 * u] =
            _mm256_shuffle_ps(a[4 * h + u], a[4 * h + u + 2], _MM_SHUFFLE(1, 0, 1, 0));
        b[4 * h + 2 * u + 1] =
            _mm256_shuffle_ps(a[4 * h + u], a[4 * h + u + 2], _MM_SHUFFLE(3, 2, 3, 2));
      }
    for (int c = 0; c < 4; ++c) {
      v[c] = _mm256_permute2f128_ps(b[c], b[4 + c], 0x20);
      v[4 + c] = _mm256_permute2f128_ps(b[c], b[4 + c], 0x31);
    }
  }
  // The kLanes × kLanes transpose of this ISA: v[r] lane c to v[c] lane r.
  [[gnu::always_inline]] static inline void transpose_lanes(Batch (&v)[kLanes]) {
    if constexpr (kAvx512) {
      __m512 x[16];
      for (int r = 0; r < 16; ++r) x[r] = v[r];
      transpose16(x);
      for (int r = 0; r < 16; ++r) v[r] = Batch(x[r]);
    } else {
      __m256 x[8];
      for (int r = 0; r < 8; ++r) x[r] = v[r];
      transpose8(x);
      for (int r = 0; r < 8; ++r) v[r] = Batch(x[r]);
    }
  }

  // Activation rows [i0, i0 + kPanel) in planes at `panel` (in_planes<kPanel>), rows past m as
  // zeros: each group of lane_stride vectors in lane order (lane_order_group), then transposed.
  static void pack_panel(const GemmArgs& g, int64_t i0, int64_t kv, float* panel) {
    const int64_t stride = lane_stride(g.w.format), group = stride * kLanes;
    const int64_t rows = std::min<int64_t>(kPanel, g.m - i0);
    alignas(64) float lanes[kLanes][4 * kLanes] = {};  // per row, one group's vectors
    for (int64_t first = 0; first < kv; first += group) {
      for (int64_t r = 0; r < rows; ++r)
        lane_order_group(g.a + (i0 + r) * g.lda + first, stride, lanes[r], kLanes);
      for (int64_t j = 0; j < stride; ++j) {
        Batch v[kLanes];
        for (int r = 0; r < kLanes; ++r) v[r] = Batch::load_aligned(lanes[r] + j * kLanes);
        transpose_lanes(v);
        const int64_t t = first / kLanes + j;
        for (int l = 0; l < kLanes; ++l)
          store_panel_step(v[l], panel + in_planes<kPanel>(0, t, l, kv));
      }
    }
  }

  // Lanes [0, kPanel) of v at dst (the panel's step: kPanel floats, the next step right after).
  [[gnu::always_inline]] static inline void store_panel_step(Batch v, float* dst) {
    if constexpr (kAvx512) {
      _mm512_mask_storeu_ps(dst, (1u << kPanel) - 1, v);
    } else {
      const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      _mm256_maskstore_ps(dst, _mm256_cmpgt_epi32(_mm256_set1_epi32(kPanel), lanes), v);
    }
  }

  // W rows [j0, j0 + nj) decoded as decode_rows decodes them, in planes at `out`
  // (in_planes<kStripRows>), the last strip filled up with zero rows; kLanes rows at a time, one
  // segment of codes of each. FP4 units of transposed rows, and on AVX-512 FP8 units, are
  // transposed as codes (fp4_strip_unit, fp8_strip_unit: a fraction of the shuffles of
  // transposing the decoded floats), F32 and BF16 vectors transposed as loaded
  // (plain_strip_segment); the other segments (FP8 on AVX2, FP4 rows as stored, FP4 scale codes
  // out of fp4_strip_unit's range) are decoded row by row (decode_segment, into L1) and each of
  // their vectors transposed.
  static void decode_strips(const WeightView& w, int64_t j0, int64_t nj, int64_t kv, float* out) {
    const int64_t segment = segment_inputs(w.format);
    const int64_t padded = (nj + kStripRows - 1) / kStripRows * kStripRows;
    for (int64_t c0 = 0; c0 < padded; c0 += kLanes) {
      const int64_t rows = std::clamp<int64_t>(nj - c0, 0, kLanes);
      StoredRow stored[kLanes];
      const uint8_t* scales[kLanes] = {};
      bool transposed = true;
      for (int64_t r = 0; r < rows; ++r) {
        stored[r] = w.stored_row(j0 + c0 + r);
        scales[r] = row_scale_codes(w, j0 + c0 + r);
        transposed = transposed && stored[r].transposed;
      }
      // in_planes<kStripRows>(c0, t, l, kv), its row part taken out of the loops
      float* const rows_at = out + in_planes<kStripRows>(c0, 0, 0, kv);
      const int64_t steps = kv / kLanes;
      const auto plane = [rows_at, steps](int64_t t, int64_t l) {
        return rows_at + (l * steps + t) * kStripRows;
      };
      alignas(64) float segments[kLanes][128] = {};  // rows past nj stay zero
      for (int64_t p0 = 0; p0 < kv; p0 += segment) {
        const int64_t p1 = std::min(kv, p0 + segment);
        if constexpr (kAvx512) {
          if (w.format == WeightFormat::kFp8Block) {
            fp8_strip_unit(stored, scales, rows, p0, plane);
            continue;
          }
        }
        if (w.format == WeightFormat::kFp4Block && transposed &&
            fp4_strip_unit(stored, scales, rows, p0, (p1 - p0) / kLanes, plane))
          continue;
        if (w.format == WeightFormat::kF32 || w.format == WeightFormat::kBF16) {
          plain_strip_segment(w.format, stored, rows, p0, p1, plane);
          continue;
        }
        for (int64_t r = 0; r < rows; ++r)
          decode_segment(w.format, stored[r], scales[r], p0, p1,
                         [&](int64_t p) { return segments[r] + (p - p0); });
        for (int64_t j = 0; j < (p1 - p0) / kLanes; ++j) {
          Batch v[kLanes];
          for (int r = 0; r < kLanes; ++r) v[r] = Batch::load_aligned(segments[r] + j * kLanes);
          transpose_lanes(v);
          for (int l = 0; l < kLanes; ++l) v[l].store_aligned(plane(p0 / kLanes + j, l));
        }
      }
    }
  }

  // Inputs [p0, p1) of 16 F32 or BF16 rows into their planes: each vector loaded (BF16 widened)
  // straight from the rows and transposed (a call of decode_segment per 16 F32 inputs and row had
  // cost the F32 GEMM as much time as the transposes).
  template <class Plane>
  static void plain_strip_segment(WeightFormat format, const StoredRow* stored, int64_t rows,
                                  int64_t p0, int64_t p1, const Plane& plane) {
    for (int64_t p = p0; p < p1; p += kLanes) {
      Batch v[kLanes];
      for (int r = 0; r < kLanes; ++r) {
        if (r >= rows)
          v[r] = Batch(0.0f);
        else
          v[r] = format == WeightFormat::kF32 ? load_f32(stored[r].at(p * 4))
                                              : load_bf16(stored[r].at(p * 2));
      }
      transpose_lanes(v);
      for (int l = 0; l < kLanes; ++l) v[l].store_aligned(plane(p / kLanes, l));
    }
  }

  // The 64-byte units at byte `byte` of 16 rows (rows past `rows`: zeros), transposed: vector l
  // holds 32-bit word l of every row, row r in lane r. Each row is prefetched into L2 2 KiB ahead
  // in its storage: within the row for FP8 rows as stored, 8 KiB along a tiled group's stream; in
  // FP4 row units (2 KiB rows) mostly the next row's unit, read in the same pass (FP4 experts of
  // 24 rows from memory in row units measured -5%, at the edge of the host's noise).
  [[gnu::always_inline]] static inline void units_transposed(const StoredRow* stored, int64_t rows,
                                                             int64_t byte, __m512 (&v)[16]) {
    for (int r = 0; r < rows; ++r) __builtin_prefetch(stored[r].at(byte + 2048), 0, 2);
    for (int r = 0; r < 16; ++r)
      v[r] = r < rows ? _mm512_castsi512_ps(_mm512_loadu_si512(stored[r].at(byte)))
                      : _mm512_setzero_ps();
    transpose16(v);
  }

  // One FP8 unit (inputs p0 .. p0 + 63) of 16 rows into their planes. Transposed, word l of each
  // row is what fp8_unit_times_256 turns into lane l of its vectors, so here it yields, per
  // lane-order step, a vector across the rows; each lane is multiplied by its row's block scale
  // as decode_segment multiplies it.
  template <class Plane>
  static void fp8_strip_unit(const StoredRow* stored, const uint8_t* const* scales, int64_t rows,
                             int64_t p0, const Plane& plane) {
    alignas(64) float row_scales[16] = {};
    for (int64_t r = 0; r < rows; ++r)
      row_scales[r] = ue8m0_to_float(scales[r][p0 / 128]) / kFp8ViaFp16Factor;
    const Batch scale = Batch::load_aligned(row_scales);
    __m512 v[16];
    units_transposed(stored, rows, p0, v);
    for (int l = 0; l < 16; ++l) {
      Batch w[4];
      fp8_unit_times_256(_mm512_castps_si512(v[l]), w);
      for (int j = 0; j < 4; ++j) (w[j] * scale).store_aligned(plane(p0 / kLanes + j, l));
    }
  }

  // One FP4 unit (inputs p0 .. p0 + 127, of which `vectors` lane-order steps lie below kv) of 16
  // transposed rows into their planes, where every block scale code involved lies in [2, 252];
  // false, and nothing written, otherwise. Transposed, word l of each row holds byte l of the
  // unit's four blocks, so fp4_unit_block yields vectors across the rows from the table of code
  // 127 (the values themselves), and each lane is multiplied by its row's block scale. In that
  // range the scale and every product are normal floats: the product is exact, the value
  // kFp4ScaledTables[code] holds, whatever FTZ/DAZ say. The table's subnormal, infinite and NaN
  // entries are left to decode_segment.
  template <class Plane>
  static bool fp4_strip_unit(const StoredRow* stored, const uint8_t* const* scales, int64_t rows,
                             int64_t p0, int64_t vectors, const Plane& plane) {
    if constexpr (kAvx512)
      return fp4_strip_unit_avx512(stored, scales, rows, p0, vectors, plane);
    else
      return fp4_strip_unit_avx2(stored, scales, rows, p0, vectors, plane);
  }
  template <class Plane>
  static bool fp4_strip_unit_avx512(const StoredRow* stored, const uint8_t* const* scales,
                                    int64_t rows, int64_t p0, int64_t vectors, const Plane& plane) {
    constexpr __mmask16 kAll = 0xFFFF;
    alignas(64) uint32_t codes[16];
    for (int r = 0; r < 16; ++r) {
      codes[r] = 0x7F7F7F7Fu;  // a scale of 1 for absent rows and for blocks past kv
      if (r < rows) std::memcpy(&codes[r], scales[r] + p0 / 32, size_t(vectors / 2));
    }
    const __m512i code_bytes = _mm512_load_si512(codes);
    if (_mm512_cmplt_epu8_mask(code_bytes, _mm512_set1_epi8(2)) |
        _mm512_cmpgt_epu8_mask(code_bytes, _mm512_set1_epi8(char(252))))
      return false;
    Batch scale[4];  // block b's scales: code byte b of each row as a float's exponent field
    for (int b = 0; b < 4; ++b)
      scale[b] = Batch(_mm512_castsi512_ps(_mm512_maskz_slli_epi32(
          kAll,
          _mm512_maskz_and_epi32(kAll, _mm512_maskz_srli_epi32(kAll, code_bytes, unsigned(8 * b)),
                                 _mm512_set1_epi32(0xFF)),
          23)));
    __m512 v[16];
    units_transposed(stored, rows, p0 / 2, v);
    for (int l = 0; l < 16; ++l)
      for_each_unit_block([&]<int B>() {
        if (2 * B >= vectors) return;
        Batch lo, hi;
        fp4_unit_block<B>(_mm512_castps_si512(v[l]), 127, lo, hi);
        (lo * scale[B]).store_aligned(plane(p0 / kLanes + 2 * B, l));
        (hi * scale[B]).store_aligned(plane(p0 / kLanes + 2 * B + 1, l));
      });
    return true;
  }

  // fp4_strip_unit on AVX2, for 8 rows. There the register path's vector at lane-order step
  // 4B + 2h of a unit holds, in lane l, the low nibbles of byte B of the unit's word 8h + l, and
  // the next step the high ones (load_fp4_pair on a transposed unit). So the rows' units are
  // transposed as 32-bit words (two 8 × 8 transposes: vector w holds word w of every row), and
  // each word's byte B yields the two steps' vectors across the rows: the magnitude from AVX2's
  // 8-entry permute, the sign from bit 3, times the rows' scales (as on AVX-512, only where every
  // scale code lies in [2, 252], so that the products are the table's values whatever FTZ/DAZ
  // say).
  template <class Plane>
  static bool fp4_strip_unit_avx2(const StoredRow* stored, const uint8_t* const* scales,
                                  int64_t rows, int64_t p0, int64_t vectors, const Plane& plane) {
    alignas(32) uint32_t codes[8];
    for (int r = 0; r < 8; ++r) {
      codes[r] = 0x7F7F7F7Fu;  // a scale of 1 for absent rows and for blocks past kv
      if (r < rows) std::memcpy(&codes[r], scales[r] + p0 / 32, size_t(vectors / 4));
    }
    const __m256i code_bytes = _mm256_load_si256(reinterpret_cast<const __m256i*>(codes));
    const __m256i in_range = _mm256_and_si256(
        _mm256_cmpeq_epi8(_mm256_max_epu8(code_bytes, _mm256_set1_epi8(2)), code_bytes),
        _mm256_cmpeq_epi8(_mm256_min_epu8(code_bytes, _mm256_set1_epi8(char(252))), code_bytes));
    if (_mm256_movemask_epi8(in_range) != -1) return false;
    Batch scale[4];  // block b's scales: code byte b of each row as a float's exponent field
    for (int b = 0; b < 4; ++b)
      scale[b] = Batch(_mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_and_si256(_mm256_srli_epi32(code_bytes, 8 * b), _mm256_set1_epi32(0xFF)), 23)));
    __m256 words[2][8];  // words[h][l]: word 8h + l of each row's unit
    for (int r = 0; r < 8; ++r) {
      if (r >= rows) {
        words[0][r] = words[1][r] = _mm256_setzero_ps();
        continue;
      }
      __builtin_prefetch(stored[r].at(p0 / 2 + 2048), 0, 2);
      const auto* unit = reinterpret_cast<const float*>(stored[r].at(p0 / 2));
      words[0][r] = _mm256_loadu_ps(unit);
      words[1][r] = _mm256_loadu_ps(unit + 8);
    }
    transpose8(words[0]);
    transpose8(words[1]);
    const __m256 magnitudes = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    const __m256i sign_bit = _mm256_set1_epi32(int32_t(0x80000000u));
    // The value of the nibble in bits 0-3 of each word (bits above are ignored).
    const auto value = [&](__m256i nibble) {
      const __m256 magnitude = _mm256_permutevar8x32_ps(magnitudes, nibble);
      return _mm256_xor_ps(magnitude, _mm256_castsi256_ps(_mm256_and_si256(
                                          _mm256_slli_epi32(nibble, 28), sign_bit)));
    };
    for (int w = 0; w < 16; ++w)
      for (int b = 0; b < 4 && 4 * b < vectors; ++b) {
        const __m256i byte = _mm256_srli_epi32(_mm256_castps_si256(words[w / 8][w % 8]), 8 * b);
        const int64_t step = p0 / kLanes + 4 * b + 2 * (w / 8);
        (Batch(value(byte)) * scale[b]).store_aligned(plane(step, w % 8));
        (Batch(value(_mm256_srli_epi32(byte, 4))) * scale[b]).store_aligned(plane(step + 1, w % 8));
      }
    return true;
  }

  // Chains of panel rows [0, MR) × the strip's rows over all planes (`steps` each), added in the
  // tree's order as they come: sums[r][v] holds the horizontal sums of outputs (r, strip rows
  // kLanes·v .. kLanes·v + kLanes - 1). Plane kTreeOrder[s] closes the tree levels where s has
  // its low bits set.
  template <int MR>
  static void strip_tile(const float* panel, const float* strip, int64_t steps,
                         Batch (&sums)[MR][2]) {
    Batch pending[kTreeLevels][MR][2];
    for (int s = 0; s < kLanes; ++s) {
      const float* ap = panel + kTreeOrder[s] * steps * kPanel;  // the plane's first step
      const float* wp = strip + kTreeOrder[s] * steps * kStripRows;
      Batch acc[MR][2];
      for (auto& row : acc) row[0] = row[1] = Batch(0.0f);
      for (const float* end = wp + steps * kStripRows; wp != end; wp += kStripRows, ap += kPanel) {
        const Batch w0 = Batch::load_aligned(wp), w1 = Batch::load_aligned(wp + kLanes);
        for (int r = 0; r < MR; ++r) {
          const Batch a(ap[r]);
          acc[r][0] = xsimd::fma(a, w0, acc[r][0]);
          acc[r][1] = xsimd::fma(a, w1, acc[r][1]);
        }
      }
      int level = 0;
      for (int bits = s; bits % 2 == 1; bits /= 2, ++level)
        for (int r = 0; r < MR; ++r)
          for (int v = 0; v < 2; ++v) acc[r][v] = pending[level][r][v] + acc[r][v];
      for (int r = 0; r < MR; ++r)
        for (int v = 0; v < 2; ++v)
          (level == kTreeLevels ? sums : pending[level])[r][v] = acc[r][v];
    }
  }

  // Rows [j_begin, j_end) of C for every activation row, from the block's strips.
  static void multiply_strips(const GemmArgs& g, const float* panels, int64_t j_begin,
                              int64_t j_end, const float* strips) {
    const int64_t kv = vector_inputs(g), steps = kv / kLanes;
    alignas(64) float h[16];
    for (int64_t i0 = 0; i0 < g.m; i0 += kPanel)
      with_count<kPanel>(std::min<int64_t>(kPanel, g.m - i0), [&]<int MR>() {
        for (int64_t c0 = 0; c0 < j_end - j_begin; c0 += kStripRows) {
          Batch sums[MR][2];
          strip_tile<MR>(panels + i0 * kv, strips + c0 * kv, steps, sums);
          for (int r = 0; r < MR; ++r)
            for (int v = 0; v < 2; ++v) {
              const int64_t j = j_begin + c0 + v * kLanes;
              if (j >= j_end) continue;
              sums[r][v].store_aligned(h);
              finish_outputs(g, i0 + r, j, std::min<int64_t>(kLanes, j_end - j), h, kv);
            }
        }
      });
  }

  // run_decoded on AVX-512 and AVX2: the activations in panels once per call, then per block of W
  // rows (about 512 KiB decoded, in L2 while every panel passes over it) the strips and their
  // tiles.
  static void run_strips(const GemmArgs& g) {
    const int64_t kv = vector_inputs(g), block = decoded_block_rows(g, kStripRows);
    const int64_t panels = (g.m + kPanel - 1) / kPanel;
    run_blocks(
        g, block, panels * kPanel * kv, panels,
        [&](int64_t q, float* a) { pack_panel(g, q * kPanel, kv, a + q * kPanel * kv); },
        size_t(block * kv),  // one block of strips
        [&](int64_t j_begin, int64_t j_end, const float* a, float* strips) {
          decode_strips(g.w, j_begin, j_end - j_begin, kv, strips);
          multiply_strips(g, a, j_begin, j_end, strips);
        });
  }
#endif

  static void run(const GemmArgs& g) { run_group(&g, 1); }

  // Independent GEMMs as one piece of work: those of few rows (the register path) share one
  // dynamic schedule of weight-tile chunks, so the threads part and meet once rather than once per
  // GEMM (an MoE layer's expert projections at decode had been 21 parallel regions); the others
  // run one after the other through the decoded-block path. Each output gets the bits it gets
  // alone. The scratch grows once per thread: no allocation per token.
  static void run_group(const GemmArgs* gemms, int64_t count) {
    thread_local std::vector<float> lane_orders;  // the activations in lane order (lane_stride)
    thread_local std::vector<RegisterInputs> inputs;
    thread_local std::vector<TileChunk> chunks;
    size_t lane_floats = 0, weight_bytes = 0;  // of the GEMMs on the register path
    bool fork = false;
    for (int64_t i = 0; i < count; ++i) {
      const GemmArgs& g = gemms[i];
      if (g.m > register_rows_limit(g.w.format)) {
        run_decoded(g);
        continue;
      }
      if (g.m == 0) continue;
      if (lane_stride(g.w.format) > 1) lane_floats += size_t(g.m * g.k);
      fork = fork || parallel(g);
      weight_bytes += g.w.data_bytes();
    }
    fork = fork || (weight_bytes >= kParallelWeightBytes && may_fork());
    const int64_t chunk = gemm_chunk_bytes(int64_t(weight_bytes), fork ? omp_get_max_threads() : 1);
    lane_orders.resize(lane_floats);
    inputs.resize(size_t(count));
    chunks.clear();
    float* lane_order = lane_orders.data();
    for (int64_t i = 0; i < count; ++i) {
      const GemmArgs& g = gemms[i];
      if (g.m > register_rows_limit(g.w.format) || g.m == 0) continue;
      inputs[size_t(i)] = register_inputs(g, lane_order);
      if (lane_stride(g.w.format) > 1) lane_order += g.m * g.k;
      const int64_t n_tiles = (g.n + kTile - 1) / kTile, per_chunk = tiles_per_chunk(g, chunk);
      for (int64_t t = 0; t < n_tiles; t += per_chunk)
        chunks.push_back({i, t, std::min(n_tiles, t + per_chunk)});
    }
    const TileChunk* work = chunks.data();
    const RegisterInputs* in = inputs.data();
    const auto n_chunks = int64_t(chunks.size());
    ParallelGuard guard;  // the tiles' scale buffers grow on first use (std::bad_alloc)
#pragma omp parallel for schedule(dynamic, 1) if (fork)
    for (int64_t c = 0; c < n_chunks; ++c)
      guard.run([&] { run_chunk(gemms[work[c].gemm], work[c], in[work[c].gemm]); });
    guard.rethrow();
  }
};

}  // namespace dsv4::cpu::detail
