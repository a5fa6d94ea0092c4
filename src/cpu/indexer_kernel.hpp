// Lightning-indexer scores of a few queries against one block of cached keys, written once over an
// xsimd architecture tag and instantiated per ISA next to the GEMM (kernels_<isa>.cpp).
//
// total[t, j] = Σ_h u[t, h] · ReLU(q[t, h] · K_j). The q·K products are a GEMM of heads × keys
// with a short depth (V4: 64 heads, 128 inputs), where the GEMM's dot-product tiles spend as much
// on storing partial sums and on horizontal sums as on their multiply-adds (46% of the FMA peak,
// measured with bench_indexer). Here the heads run along the lanes instead: a register tile of
// head vectors × keys takes each key input as a broadcast, so each product's accumulator is one
// lane that meets the inputs one after the other, and the head sum is a ReLU, a multiply-add per
// head vector and one horizontal sum per key.
//
// Every total is the same fixed sequence of operations whatever the number of queries or keys in
// the call, so prefill and decode select the same entries.
#pragma once

#include <algorithm>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "cpu_kernels.hpp"
#include "gemm_kernel.hpp"

namespace dsv4::cpu::detail {

template <class Arch>
struct IndexerKernel {
  using Gemm = GemmKernel<Arch>;
  using Batch = typename Gemm::Batch;
  using Buffer = std::vector<float, xsimd::aligned_allocator<float, 64>>;
  static constexpr int64_t kLanes = Gemm::kLanes;
  // A register tile: head vectors × keys accumulators, the head vectors of q and a broadcast key
  // input (AVX-512: 20 + 4 + 1 of its 32 registers; 4, 6, 7 or 8 keys measured the same within
  // 3%; the 16-register ISAs: 10 + 2 + 1).
  static constexpr int kHeadVectors = Gemm::kAvx512 ? 4 : 2;
  static constexpr int kKeys = 5;

  // The input at position p of a decoded key row: inputs [0, kv) (Gemm::vector_inputs) are in
  // the GEMM's lane order (decode_segment's; see Gemm::lane_stride: vector v of a lane-order
  // group holds inputs v, v + stride, v + 2·stride, ...), the rest in their own order.
  static int64_t input_at(WeightFormat format, int64_t p, int64_t kv) {
    if (p >= kv) return p;
    const int64_t stride = Gemm::lane_stride(format), group = stride * kLanes, r = p % group;
    return p - r + r % kLanes * stride + r / kLanes;
  }

  // The keys as rows of floats `stride` apart: fp32 rows as stored are read in place, the rest
  // decoded into `buffer` (whole rows, by the GEMM's decoders, then the scalar tail).
  struct KeyRows {
    const float* base = nullptr;
    int64_t stride = 0;
  };
  static KeyRows key_rows(const WeightView& w, Buffer& buffer) {
    if (w.format == WeightFormat::kF32 && !w.tiled() && (w.row_stride % 4) == 0)
      return {reinterpret_cast<const float*>(w.row(0)),
              (w.row_stride ? w.row_stride : w.in * 4) / 4};
    const int64_t stride = (w.in + kLanes - 1) / kLanes * kLanes;
    const int64_t kv = Gemm::vector_inputs(w.format, w.in),
                  segment = Gemm::segment_inputs(w.format);
    buffer.resize(size_t(w.out * stride));
    for (int64_t j = 0; j < w.out; ++j) {
      float* row = buffer.data() + j * stride;
      const uint8_t* scales = Gemm::row_scale_codes(w, j);
      const StoredRow stored = w.stored_row(j);
      for (int64_t p0 = 0; p0 < kv; p0 += segment)
        Gemm::decode_segment(w.format, stored, scales, p0, std::min(kv, p0 + segment),
                             [&](int64_t p) { return row + p; });
      for (int64_t p = kv; p < w.in; ++p) row[p] = w.at(j, p);
    }
    return {buffer.data(), stride};
  }

  // q of one query transposed to [c][hp] (position p holds input inputs[p], the key rows'
  // order; heads padded with zeros to hp, a multiple of kLanes), and its u padded alike: padded
  // heads add u·ReLU(0) = 0.
  static void transpose_query(const float* q, const float* u, int64_t nh, int64_t hp,
                              const std::vector<int32_t>& inputs, Buffer& qt, Buffer& up) {
    const auto c = int64_t(inputs.size());
    qt.resize(size_t(c * hp));
    up.assign(size_t(hp), 0.0f);
    std::copy(u, u + nh, up.begin());
    for (int64_t h = 0; h < hp; ++h) {
      float* dst = qt.data() + h;
      if (h >= nh) {
        for (int64_t p = 0; p < c; ++p) dst[p * hp] = 0.0f;
        continue;
      }
      const float* row = q + h * c;
      for (int64_t p = 0; p < c; ++p) dst[p * hp] = row[inputs[size_t(p)]];
    }
  }

  // Adds Σ_h u_h · ReLU(q_h · K_j) over HG head vectors (qt, u: their first) to total[j] for KJ
  // keys. Inlined, so the caller's totals stay in registers.
  template <int HG, int KJ>
  [[gnu::always_inline]] static inline void add_head_vectors(const float* qt, int64_t hp,
                                                             const float* const* rows, int64_t c,
                                                             const float* u, Batch* total) {
    Batch acc[HG][KJ];
    for (auto& heads : acc)
      for (auto& a : heads) a = Batch(0.0f);
    for (int64_t p = 0; p < c; ++p) {
      Batch qv[HG];
      for (int h = 0; h < HG; ++h) qv[h] = Batch::load_aligned(qt + p * hp + h * kLanes);
      for (int j = 0; j < KJ; ++j) {
        const Batch k(rows[j][p]);
        for (int h = 0; h < HG; ++h) acc[h][j] = xsimd::fma(qv[h], k, acc[h][j]);
      }
    }
    const Batch zero(0.0f);
    for (int h = 0; h < HG; ++h) {
      const Batch uh = Batch::load_aligned(u + h * kLanes);
      // std::max(dot, 0) as the operator writes it: NaN stays NaN.
      for (int j = 0; j < KJ; ++j)
        total[j] = xsimd::fma(uh, xsimd::select(acc[h][j] < zero, zero, acc[h][j]), total[j]);
    }
  }

  // Totals of KJ keys from key row j0.
  template <int KJ>
  static void score_keys(const float* qt, const float* up, int64_t hp, const KeyRows& keys,
                         int64_t j0, int64_t c, float* out) {
    const float* rows[KJ];
    for (int j = 0; j < KJ; ++j) rows[j] = keys.base + (j0 + j) * keys.stride;
    Batch total[KJ];
    for (auto& t : total) t = Batch(0.0f);
    const int64_t head_vectors = hp / kLanes;
    for (int64_t v0 = 0; v0 < head_vectors; v0 += kHeadVectors)
      with_count<kHeadVectors>(std::min<int64_t>(kHeadVectors, head_vectors - v0), [&]<int HG>() {
        add_head_vectors<HG, KJ>(qt + v0 * kLanes, hp, rows, c, up + v0 * kLanes, total);
      });
    for (int j = 0; j < KJ; ++j) out[j0 + j] = xsimd::hadd(total[j]);
  }

  static void run(const IndexerScoresArgs& a) {
    thread_local Buffer decoded, qt, up;
    thread_local std::vector<int32_t> inputs;  // the key rows' order of inputs (input_at)
    const KeyRows keys = key_rows(a.keys, decoded);
    const int64_t nh = a.n_heads, hp = (nh + kLanes - 1) / kLanes * kLanes, nb = a.keys.out;
    const int64_t c = a.keys.in, kv = Gemm::vector_inputs(a.keys.format, c);
    inputs.resize(size_t(c));
    for (int64_t p = 0; p < c; ++p) inputs[size_t(p)] = int32_t(input_at(a.keys.format, p, kv));
    for (int64_t t = 0; t < a.n_queries; ++t) {
      transpose_query(a.q + t * nh * c, a.u + t * nh, nh, hp, inputs, qt, up);
      float* out = a.totals + t * a.ld;
      for (int64_t j0 = 0; j0 < nb; j0 += kKeys)
        with_count<kKeys>(std::min<int64_t>(kKeys, nb - j0), [&]<int KJ>() {
          score_keys<KJ>(qt.data(), up.data(), hp, keys, j0, c, out);
        });
    }
  }
};

}  // namespace dsv4::cpu::detail
