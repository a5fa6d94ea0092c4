// Sink attention over shared key/value entries as flash-decoding, written once over an xsimd
// architecture tag and instantiated per ISA next to the GEMM (kernels_<isa>.cpp).
//
// The keys are split into contiguous ranges, one per thread (when called outside a parallel
// region; inside one, e.g. prefill's loop over query positions, a call runs on its own thread).
// Each range is read once, in blocks of kBlock keys, for all heads: scores for the block, an
// online softmax (running max and sum per head), and the value accumulation o_h += p·k. The
// partial results are merged by log-sum-exp, with the sink logit joining the denominator there.
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

namespace dsv4::cpu::detail {

template <class Arch>
struct AttentionKernel {
  using Batch = xsimd::batch<float, Arch>;
  static constexpr int64_t kLanes = int64_t(Batch::size);
  static constexpr int64_t kBlock = 16;  // keys per block: scores of a block fit in registers

  // Running state of one key range for all heads.
  struct Partial {
    std::vector<float> max, sum, acc;  // [H], [H], [H, d]
    void reset(int64_t heads, int64_t dim) {
      max.assign(size_t(heads), -std::numeric_limits<float>::infinity());
      sum.assign(size_t(heads), 0.0f);
      acc.assign(size_t(heads * dim), 0.0f);
    }
  };

  static float dot(const float* a, const float* b, int64_t n) {
    const int64_t n_vec = n - n % kLanes;
    Batch s0(0.0f), s1(0.0f);
    int64_t i = 0;
    for (; i + 2 * kLanes <= n_vec; i += 2 * kLanes) {
      s0 = xsimd::fma(Batch::load_unaligned(a + i), Batch::load_unaligned(b + i), s0);
      s1 = xsimd::fma(Batch::load_unaligned(a + i + kLanes), Batch::load_unaligned(b + i + kLanes),
                      s1);
    }
    for (; i < n_vec; i += kLanes)
      s0 = xsimd::fma(Batch::load_unaligned(a + i), Batch::load_unaligned(b + i), s0);
    float total = xsimd::hadd(s0 + s1);
    for (; i < n; ++i) total += a[i] * b[i];
    return total;
  }

  // acc = acc·alpha + Σ_j p[j]·keys[j] over nb keys.
  static void accumulate(float* acc, float alpha, const float* p, const float* const* keys,
                         int64_t nb, int64_t d) {
    const int64_t d_vec = d - d % kLanes;
    const Batch av(alpha);
    for (int64_t c = 0; c < d_vec; c += kLanes) {
      Batch o = Batch::load_unaligned(acc + c) * av;
      for (int64_t j = 0; j < nb; ++j)
        o = xsimd::fma(Batch(p[j]), Batch::load_unaligned(keys[j] + c), o);
      o.store_unaligned(acc + c);
    }
    for (int64_t c = d_vec; c < d; ++c) {
      float o = acc[c] * alpha;
      for (int64_t j = 0; j < nb; ++j) o += p[j] * keys[j][c];
      acc[c] = o;
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
          (G::load_fp8_scaled(in, i) * sv).store_unaligned(out + i);
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
      GemmKernel<Arch>::load_bf16(in, i).store_unaligned(out + i);
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

  static void run_range(const AttentionArgs& a, int64_t j0, int64_t j1, Partial& part) {
    const int64_t H = a.n_heads, d = a.head_dim;
    const float scale = 1.0f / std::sqrt(float(d));
    part.reset(H, d);
    float s[kBlock];
    thread_local std::vector<float> tile;
    const float* ptrs[kBlock];
    for (int64_t b0 = j0; b0 < j1; b0 += kBlock) {
      const int64_t nb = std::min(kBlock, j1 - b0);
      const float* const* keys = block_keys(a, b0, nb, tile, ptrs);
      for (int64_t h = 0; h < H; ++h) {
        const float* qh = a.q + h * d;
        float block_max = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < nb; ++j) {
          s[j] = dot(qh, keys[j], d) * scale;
          block_max = std::max(block_max, s[j]);
        }
        const float new_max = std::max(part.max[size_t(h)], block_max);
        const float alpha = std::exp(part.max[size_t(h)] - new_max);
        float block_sum = 0.0f;
        for (int64_t j = 0; j < nb; ++j) block_sum += (s[j] = std::exp(s[j] - new_max));
        part.sum[size_t(h)] = part.sum[size_t(h)] * alpha + block_sum;
        part.max[size_t(h)] = new_max;
        accumulate(part.acc.data() + h * d, alpha, s, keys, nb, d);
      }
    }
  }

  static void run(const AttentionArgs& a) {
    const int64_t H = a.n_heads, d = a.head_dim;
    // Enough work per thread to pay for the fork: split only outside parallel regions.
    const int max_threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    // At least about 2^21 multiply-adds (scores + values) per part: see GemmKernel::kParallelMacs.
    const int64_t macs_per_key = 2 * H * d;
    const int n_parts = int(std::clamp<int64_t>(a.n_keys * macs_per_key >> 21, 1, max_threads));
    thread_local std::vector<Partial> parts;
    if (parts.size() < size_t(n_parts)) parts.resize(size_t(n_parts));
    Partial* p = parts.data();
    ParallelGuard guard;
#pragma omp parallel for num_threads(n_parts) schedule(static, 1) if (n_parts > 1)
    for (int t = 0; t < n_parts; ++t) {
      const int64_t j0 = a.n_keys * t / n_parts, j1 = a.n_keys * (t + 1) / n_parts;
      guard.run([&] { run_range(a, j0, j1, p[t]); });
    }
    guard.rethrow();
    // Log-sum-exp merge; the sink adds exp(sink − max) to the denominator only.
    for (int64_t h = 0; h < H; ++h) {
      float m = a.sinks[h];
      for (int t = 0; t < n_parts; ++t) m = std::max(m, p[t].max[size_t(h)]);
      float denom = std::exp(a.sinks[h] - m);
      float* out = a.out + h * d;
      std::fill(out, out + d, 0.0f);
      for (int t = 0; t < n_parts; ++t) {
        if (p[t].sum[size_t(h)] == 0.0f) continue;  // an empty range
        const float w = std::exp(p[t].max[size_t(h)] - m);
        denom += p[t].sum[size_t(h)] * w;
        const float* acc = p[t].acc.data() + h * d;
        for (int64_t c = 0; c < d; ++c) out[c] += w * acc[c];
      }
      const float inv = 1.0f / denom;
      for (int64_t c = 0; c < d; ++c) out[c] *= inv;
    }
  }
};

}  // namespace dsv4::cpu::detail
