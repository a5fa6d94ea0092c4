// Sink attention over shared key/value entries as flash-decoding, written once over an xsimd
// architecture tag and instantiated per ISA next to the GEMM (kernels_<isa>.cpp).
//
// The keys are cut into groups of kGroupKeys at fixed boundaries. Each group is read once, in
// blocks of kBlock keys, for all heads: scores for the block, an online softmax (running max and
// sum per head), and the value accumulation o_h += p·k. The groups' results are folded by
// log-sum-exp in key order into a running state that starts from the sink logit. Outside a
// parallel region the threads compute the groups a wave at a time (one group each) and fold each
// wave by heads; inside one (prefill's loop over query positions) a call folds its groups alone.
// Either way the operations and their order depend only on the keys, never on the thread count
// or on the other queries of the call: prefill and decode give the same bits.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "dsv4/backend/backend.hpp"
#include "gemm_kernel.hpp"
#include "parallel_guard.hpp"
#include "vector_exp.hpp"

namespace dsv4::cpu::detail {

template <class Arch>
struct AttentionKernel {
  using Batch = xsimd::batch<float, Arch>;
  static constexpr int64_t kLanes = int64_t(Batch::size);
  static constexpr int64_t kBlock = 16;  // keys per block

  // Running state of one key range for all heads. The range's first block writes acc (see
  // accumulate_vectors), so reset leaves it as it is: zeroing it per group of 64 keys had taken 6%
  // of the kernel at V4's 64 heads × 512.
  struct Partial {
    std::vector<float> max, sum, acc;  // [H], [H], [H, d]
    void reset(int64_t heads, int64_t dim) {
      max.assign(size_t(heads), -std::numeric_limits<float>::infinity());
      sum.assign(size_t(heads), 0.0f);
      acc.resize(size_t(heads * dim));
    }
  };

  // Heads and keys per register tile of the scores, heads per pass of the value accumulation:
  // one query vector and one key vector serve several products each, where a product at a time
  // had loaded two vectors per multiply-add (the loads, not the FMAs, had set the pace).
  static constexpr int64_t kHeadTile = 4, kKeyTile = 4;

  // s[h·kBlock + j] = (q_h · keys[j])·scale for heads [h0, h0 + HT) and keys [j0, j0 + KT): one
  // accumulator per product over the vector part of d, then the scalar tail.
  template <int HT, int KT>
  static void score_tile(const float* q, const float* const* keys, int64_t d, int64_t h0,
                         int64_t j0, float scale, float* s) {
    const int64_t d_vec = d - d % kLanes;
    Batch acc[HT][KT];
    for (auto& row : acc)
      for (auto& b : row) b = Batch(0.0f);
    for (int64_t c = 0; c < d_vec; c += kLanes) {
      Batch k[KT];
      for (int j = 0; j < KT; ++j) k[j] = Batch::load_unaligned(keys[j0 + j] + c);
      for (int h = 0; h < HT; ++h) {
        const Batch qv = Batch::load_unaligned(q + (h0 + h) * d + c);
        for (int j = 0; j < KT; ++j) acc[h][j] = xsimd::fma(qv, k[j], acc[h][j]);
      }
    }
    // The horizontal sums, all 16 of a full AVX-512 tile at once (GemmKernel::hadd16: the bits
    // of xsimd::hadd, a sixth of the kernel's time less).
    alignas(64) float sums[HT * KT];
    if constexpr (HT * KT == 16 && kLanes == 16) {
      alignas(64) float vectors[16 * kLanes];
      for (int h = 0; h < HT; ++h)
        for (int j = 0; j < KT; ++j) acc[h][j].store_aligned(vectors + (h * KT + j) * kLanes);
      GemmKernel<Arch>::hadd16(vectors, sums);
    } else {
      for (int h = 0; h < HT; ++h)
        for (int j = 0; j < KT; ++j) sums[h * KT + j] = xsimd::hadd(acc[h][j]);
    }
    for (int h = 0; h < HT; ++h)
      for (int j = 0; j < KT; ++j) {
        float total = sums[h * KT + j];
        const float* qh = q + (h0 + h) * d;
        for (int64_t c = d_vec; c < d; ++c) total += qh[c] * keys[j0 + j][c];
        s[(h0 + h) * kBlock + j0 + j] = total * scale;
      }
  }
  // Scores of every head against the block's nb keys: s[h·kBlock + j].
  static void block_scores(const float* q, const float* const* keys, int64_t nb, int64_t H,
                           int64_t d, float scale, float* s) {
    for (int64_t h0 = 0; h0 < H; h0 += kHeadTile)
      for (int64_t j0 = 0; j0 < nb; j0 += kKeyTile)
        with_count<kHeadTile>(std::min(kHeadTile, H - h0), [&]<int HT>() {
          with_count<kKeyTile>(std::min(kKeyTile, nb - j0),
                               [&]<int KT>() { score_tile<HT, KT>(q, keys, d, h0, j0, scale, s); });
        });
  }

  // acc_h = acc_h·alpha_h + Σ_j p[h·kBlock + j]·keys[j] over nb keys, for heads [h0, h0 + HT)
  // (acc_h at acc + h·d); for a range's first block (`first`) acc_h starts at +0, which is what
  // 0·alpha_h gives for any finite score (alpha_h = exp(−inf) = 0). Each element sees the same
  // operations in the same order as a head at a time; the key vectors are loaded once for the HT
  // heads.
  // Two vectors of d at a time: HT·2 independent chains of FMAs cover the FMA latency (HT alone
  // had waited on it).
  template <int HT, int CC>
  static void accumulate_vectors(float* acc, const float* alpha, const float* p,
                                 const float* const* keys, int64_t nb, int64_t d, int64_t h0,
                                 int64_t c, bool first) {
    Batch o[HT][CC];
    for (int h = 0; h < HT; ++h)
      for (int v = 0; v < CC; ++v)
        o[h][v] = first ? Batch(0.0f)
                        : Batch::load_unaligned(acc + (h0 + h) * d + c + v * kLanes) *
                              Batch(alpha[h0 + h]);
    for (int64_t j = 0; j < nb; ++j) {
      Batch k[CC];
      for (int v = 0; v < CC; ++v) k[v] = Batch::load_unaligned(keys[j] + c + v * kLanes);
      for (int h = 0; h < HT; ++h) {
        const Batch ph(p[(h0 + h) * kBlock + j]);
        for (int v = 0; v < CC; ++v) o[h][v] = xsimd::fma(ph, k[v], o[h][v]);
      }
    }
    for (int h = 0; h < HT; ++h)
      for (int v = 0; v < CC; ++v) o[h][v].store_unaligned(acc + (h0 + h) * d + c + v * kLanes);
  }
  template <int HT>
  static void accumulate_heads(float* acc, const float* alpha, const float* p,
                               const float* const* keys, int64_t nb, int64_t d, int64_t h0,
                               bool first) {
    const int64_t d_vec = d - d % kLanes;
    int64_t c = 0;
    for (; c + 2 * kLanes <= d_vec; c += 2 * kLanes)
      accumulate_vectors<HT, 2>(acc, alpha, p, keys, nb, d, h0, c, first);
    for (; c < d_vec; c += kLanes)
      accumulate_vectors<HT, 1>(acc, alpha, p, keys, nb, d, h0, c, first);
    for (int h = 0; h < HT; ++h)
      for (int64_t c = d_vec; c < d; ++c) {
        float& a = acc[(h0 + h) * d + c];
        float o = first ? 0.0f : a * alpha[h0 + h];
        for (int64_t j = 0; j < nb; ++j) o += p[(h0 + h) * kBlock + j] * keys[j][c];
        a = o;
      }
  }

  // One stored entry as fp32, with the GEMM kernel's vector decoders (e4m3 through the fp16
  // converter, bf16 by a shift); the codec's scalar decode for anything else.
  static void decode_entry(const EntryCodec& codec, const uint8_t* in, float* out) {
    using G = GemmKernel<Arch>;
    if (codec.format == CacheFormat::kFp8Rope) {
      const int64_t n = codec.nope_dim();
      for (int64_t b = 0; b < codec.fp8_scales(); ++b) {
        const int64_t i0 = b * quant::kFp8Block, i1 = std::min(n, i0 + quant::kFp8Block);
        const float s = ue8m0_to_float(in[n + b]);
        const Batch sv(s * kFp8ViaFp16Factor);
        int64_t i = i0;
        for (; i + kLanes <= i1; i += kLanes)
          (G::load_fp8_scaled(in + i) * sv).store_unaligned(out + i);
        for (; i < i1; ++i) out[i] = fp8_e4m3_to_float(in[i]) * s;
      }
      decode_bf16(in + codec.rope_offset(), codec.rope_dim, out + n);
    } else if (codec.format == CacheFormat::kBF16) {
      decode_bf16(in, codec.dim, out);
    } else {
      codec.decode(in, out);
    }
  }
  static void decode_bf16(const uint8_t* in, int64_t n, float* out) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      GemmKernel<Arch>::load_bf16(in + 2 * i).store_unaligned(out + i);
    for (; i < n; ++i) {
      uint16_t b;
      std::memcpy(&b, in + 2 * i, 2);
      out[i] = bf16_to_float(b);
    }
  }

  // The block's keys as fp32: the caller's pointers, or cache entries decoded into `tile` (one
  // block of kBlock entries at a time, so the cache itself is never expanded).
  static const float* const* block_keys(const AttentionArgs& a, int64_t b0, int64_t nb,
                                        std::vector<float>& tile, const float** ptrs) {
    if (!a.key_entries) return a.keys + b0;
    const int64_t d = a.head_dim;
    if (a.key_codec.format == CacheFormat::kF32) {
      for (int64_t j = 0; j < nb; ++j)
        ptrs[j] = reinterpret_cast<const float*>(a.key_entries[b0 + j]);
      return ptrs;
    }
    tile.resize(size_t(kBlock * d));
    for (int64_t j = 0; j < nb; ++j) {
      decode_entry(a.key_codec, a.key_entries[b0 + j], tile.data() + j * d);
      ptrs[j] = tile.data() + j * d;
    }
    return ptrs;
  }

  // The online softmax of one block for every head: its scores s[h·kBlock + j] become weights
  // exp(s − m_h) against the new running maximum m_h, and the running sum is rescaled by
  // alpha_h = exp(m_h before − m_h) and takes the block's sum. The exps run on whole vectors
  // (vector_exp): the scalar std::exp had taken about a tenth of the kernel. Scores past nb are
  // set to −inf first, so they weigh +0 and leave the sums as they are. `alphas` and `new_max`
  // hold H rounded up to whole vectors.
  static void online_softmax(float* s, int64_t nb, int64_t H, Partial& part, float* alphas,
                             float* new_max) {
    static_assert(kBlock % kLanes == 0);
    constexpr int64_t kChunks = kBlock / kLanes;
    const int64_t padded = padded_heads(H);
    alignas(64) float lanes[kLanes];
    for (int64_t h = 0; h < H; ++h) {
      float* sh = s + h * kBlock;
      std::fill(sh + nb, sh + kBlock, -std::numeric_limits<float>::infinity());
      Batch block_max = Batch::load_unaligned(sh);
      for (int64_t v = 1; v < kChunks; ++v)
        block_max = xsimd::max(block_max, Batch::load_unaligned(sh + v * kLanes));
      block_max.store_aligned(lanes);
      float m = part.max[size_t(h)];
      for (float lane : lanes) m = std::max(m, lane);
      new_max[h] = m;
      alphas[h] = part.max[size_t(h)] - m;
    }
    std::fill(alphas + H, alphas + padded, 0.0f);
    for (int64_t h = 0; h < padded; h += kLanes)
      vector_exp(Batch::load_unaligned(alphas + h)).store_unaligned(alphas + h);
    for (int64_t h = 0; h < H; ++h) {
      float* sh = s + h * kBlock;
      const Batch m(new_max[h]);
      Batch block_sum(0.0f);
      for (int64_t v = 0; v < kChunks; ++v) {
        const Batch p = vector_exp(Batch::load_unaligned(sh + v * kLanes) - m);
        p.store_unaligned(sh + v * kLanes);
        block_sum += p;
      }
      part.sum[size_t(h)] = part.sum[size_t(h)] * alphas[h] + xsimd::hadd(block_sum);
      part.max[size_t(h)] = new_max[h];
    }
  }
  static int64_t padded_heads(int64_t H) { return (H + kLanes - 1) / kLanes * kLanes; }

  static void run_range(const AttentionArgs& a, int64_t j0, int64_t j1, Partial& part) {
    const int64_t H = a.n_heads, d = a.head_dim;
    const float scale = 1.0f / std::sqrt(float(d));
    part.reset(H, d);
    thread_local std::vector<float> tile, scores, alphas, new_max;
    scores.resize(size_t(H * kBlock));
    alphas.resize(size_t(padded_heads(H)));
    new_max.resize(size_t(padded_heads(H)));
    float* s = scores.data();
    const float* ptrs[kBlock];
    for (int64_t b0 = j0; b0 < j1; b0 += kBlock) {
      const int64_t nb = std::min(kBlock, j1 - b0);
      const float* const* keys = block_keys(a, b0, nb, tile, ptrs);
      block_scores(a.q, keys, nb, H, d, scale, s);
      online_softmax(s, nb, H, part, alphas.data(), new_max.data());
      for (int64_t h0 = 0; h0 < H; h0 += kHeadTile)
        with_count<kHeadTile>(std::min(kHeadTile, H - h0), [&]<int HT>() {
          accumulate_heads<HT>(part.acc.data(), alphas.data(), s, keys, nb, d, h0, b0 == j0);
        });
    }
  }

  // Keys per group: the fold costs 2·H·d operations per group against 2·kGroupKeys·H·d for the
  // group itself (1.6%), and a CSA decode step (window 128 + top-512) gives 10 groups to share.
  static constexpr int64_t kGroupKeys = 64;

  // The running log-sum-exp state of the heads [h0, h1): out holds the unnormalised sum.
  static void fold(const AttentionArgs& a, const Partial& group, int64_t h0, int64_t h1, float* max,
                   float* sum) {
    const int64_t d = a.head_dim;
    for (int64_t h = h0; h < h1; ++h) {
      if (group.sum[size_t(h)] == 0.0f) continue;  // an empty group
      const float new_max = std::max(max[h], group.max[size_t(h)]);
      const float alpha = std::exp(max[h] - new_max),
                  beta = std::exp(group.max[size_t(h)] - new_max);
      sum[h] = sum[h] * alpha + group.sum[size_t(h)] * beta;
      max[h] = new_max;
      float* out = a.out + h * d;
      const float* acc = group.acc.data() + h * d;
      for (int64_t c = 0; c < d; ++c) out[c] = out[c] * alpha + acc[c] * beta;
    }
  }

  static void run(const AttentionArgs& a) {
    const int64_t H = a.n_heads, d = a.head_dim;
    const int64_t n_groups = (a.n_keys + kGroupKeys - 1) / kGroupKeys;
    // The fold starts from the sink: it joins the denominator with exp(sink − max).
    thread_local std::vector<float> state;
    state.resize(size_t(2 * H));
    float *max = state.data(), *sum = state.data() + H;
    for (int64_t h = 0; h < H; ++h) max[h] = a.sinks[h], sum[h] = 1.0f;
    std::fill(a.out, a.out + H * d, 0.0f);
    // Enough work per thread to pay for the fork: split only outside parallel regions, and only
    // with at least about 2^21 multiply-adds (scores + values) per thread (see
    // GemmKernel::kParallelMacs).
    const int max_threads = may_fork() ? omp_get_max_threads() : 1;
    const int64_t macs_per_key = 2 * H * d;
    const int n_threads =
        int(std::clamp<int64_t>(std::min(a.n_keys * macs_per_key >> 21, n_groups), 1, max_threads));
    // Two sets of partials, one per parity of the wave (see below).
    thread_local std::vector<Partial> parts;
    if (parts.size() < size_t(2 * n_threads)) parts.resize(size_t(2 * n_threads));
    Partial* p = parts.data();
    auto group_range = [&](int64_t g, Partial& part) {
      run_range(a, g * kGroupKeys, std::min(a.n_keys, (g + 1) * kGroupKeys), part);
    };
    if (n_threads == 1) {
      for (int64_t g = 0; g < n_groups; ++g) {
        group_range(g, p[0]);
        fold(a, p[0], 0, H, max, sum);
      }
    } else {
      ParallelGuard guard;
#pragma omp parallel num_threads(n_threads)
      {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t h0 = H * t / nt, h1 = H * (t + 1) / nt;
        // One barrier per wave: wave w's groups go to the partials of its parity, so a thread
        // may compute wave w + 1 while another still folds wave w, and the barrier after wave
        // w + 1 (which every thread reaches only after folding wave w) keeps wave w + 2 from
        // overwriting what wave w's fold reads. (Two barriers per wave had cost about 9% of the
        // kernel.)
        for (int64_t wave = 0; wave < n_groups; wave += nt) {
          Partial* set = p + (wave / nt % 2) * nt;
          if (wave + t < n_groups) guard.run([&] { group_range(wave + t, set[t]); });
#pragma omp barrier
          // Each thread folds the wave's groups, in order, into its own heads.
          for (int64_t g = wave; g < std::min(n_groups, wave + nt); ++g)
            fold(a, set[g - wave], h0, h1, max, sum);
        }
      }
      guard.rethrow();
    }
    for (int64_t h = 0; h < H; ++h) {
      const float inv = 1.0f / sum[h];
      float* out = a.out + h * d;
      for (int64_t c = 0; c < d; ++c) out[c] *= inv;
    }
  }
};

}  // namespace dsv4::cpu::detail
