// The fp32 GEMM microkernel, written once over an xsimd architecture tag and instantiated in one
// translation unit per ISA (gemm_f32_<isa>.cpp, each with its own compiler flags). The Arch tag
// is part of every symbol, so the per-ISA copies never collide at link time.
//
// C[m, n] = alpha * A[m, k] . W[n, k]^T + beta * C, two paths:
//  - m < 4 (decode): every output is a dot product along k of two contiguous rows; a 4x4 tile of
//    vector accumulators is reduced horizontally at the end. W is streamed once, which is what a
//    memory-bound GEMV needs.
//  - m >= 4 (prefill): a panel of 2 vectors' worth of W rows is packed k-major, then each row of A
//    is broadcast against it into a 6x2 register tile; no horizontal reductions, any k.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <xsimd/xsimd.hpp>

#include "dsv4/backend/backend.hpp"

namespace dsv4::cpu::detail {

template <class Arch>
struct GemmF32Kernel {
  using Batch = xsimd::batch<float, Arch>;
  static constexpr int64_t kLanes = int64_t(Batch::size);
  static constexpr int64_t kTile = 4;

  static void store(const GemmArgs& g, int64_t i, int64_t j, float sum) {
    float* c = g.c + i * g.ldc + j;
    *c = g.alpha * sum + (g.beta == 0.0f ? 0.0f : g.beta * *c);
  }

  // ---- GEMV-shaped (m < 4): dot products along k, W read exactly once ----
  // One output tile of up to 4x4, rows [i0, i0+mi), columns [j0, j0+nj).
  static void dot_tile(const GemmArgs& g, int64_t i0, int64_t mi, int64_t j0, int64_t nj) {
    const float* w = static_cast<const float*>(g.w);
    Batch acc[kTile][kTile];
    for (auto& row : acc)
      for (auto& b : row) b = Batch(0.0f);
    const int64_t k_vec = g.k - g.k % kLanes;
    for (int64_t p = 0; p < k_vec; p += kLanes) {
      Batch wv[kTile];
      for (int64_t j = 0; j < nj; ++j) wv[j] = Batch::load_unaligned(w + (j0 + j) * g.ldw + p);
      for (int64_t i = 0; i < mi; ++i) {
        const Batch av = Batch::load_unaligned(g.a + (i0 + i) * g.lda + p);
        for (int64_t j = 0; j < nj; ++j) acc[i][j] = xsimd::fma(av, wv[j], acc[i][j]);
      }
    }
    for (int64_t i = 0; i < mi; ++i) {
      for (int64_t j = 0; j < nj; ++j) {
        float sum = xsimd::hadd(acc[i][j]);
        const float* a_row = g.a + (i0 + i) * g.lda;
        const float* w_row = w + (j0 + j) * g.ldw;
        for (int64_t p = k_vec; p < g.k; ++p) sum += a_row[p] * w_row[p];
        store(g, i0 + i, j0 + j, sum);
      }
    }
  }

  // Below this many multiply-adds a GEMM runs on one thread: forking costs more than it saves.
  static constexpr int64_t kParallelMacs = int64_t(1) << 18;

  static void run_dot(const GemmArgs& g) {
    const int64_t n_tiles = (g.n + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (g.m * g.n * g.k > kParallelMacs)
    for (int64_t jt = 0; jt < n_tiles; ++jt) {
      const int64_t j0 = jt * kTile;
      const int64_t nj = std::min(kTile, g.n - j0);
      for (int64_t i0 = 0; i0 < g.m; i0 += kTile)
        dot_tile(g, i0, std::min(kTile, g.m - i0), j0, nj);
    }
  }

  // ---- GEMM-shaped (m >= 4): W panels packed k-major, rows of A broadcast ----
  static constexpr int64_t kNr = 2 * kLanes;  // panel width: two vectors of output columns
  static constexpr int64_t kMr = 6;           // rows per register tile: 12 accumulators
  static constexpr int64_t kRowBlock = 96;    // rows per task, so small-n GEMMs still split

  // panel[p * kNr + j] = W[j0 + j][p], zero beyond n.
  static void pack_panel(const GemmArgs& g, int64_t j0, float* panel) {
    const float* w = static_cast<const float*>(g.w);
    const int64_t nj = std::min(kNr, g.n - j0);
    for (int64_t j = 0; j < kNr; ++j) {
      if (j < nj) {
        const float* w_row = w + (j0 + j) * g.ldw;
        for (int64_t p = 0; p < g.k; ++p) panel[p * kNr + j] = w_row[p];
      } else {
        for (int64_t p = 0; p < g.k; ++p) panel[p * kNr + j] = 0.0f;
      }
    }
  }

  template <int Rows>
  static void packed_tile(const GemmArgs& g, const float* panel, int64_t i0, int64_t j0) {
    Batch acc[Rows][2];
    for (auto& row : acc) row[0] = row[1] = Batch(0.0f);
    const float* a_rows[Rows];
    for (int i = 0; i < Rows; ++i) a_rows[i] = g.a + (i0 + i) * g.lda;
    for (int64_t p = 0; p < g.k; ++p) {
      const Batch w0 = Batch::load_aligned(panel + p * kNr);
      const Batch w1 = Batch::load_aligned(panel + p * kNr + kLanes);
      for (int i = 0; i < Rows; ++i) {
        const Batch a(a_rows[i][p]);
        acc[i][0] = xsimd::fma(a, w0, acc[i][0]);
        acc[i][1] = xsimd::fma(a, w1, acc[i][1]);
      }
    }
    const int64_t nj = std::min(kNr, g.n - j0);
    alignas(64) float out[kNr];
    for (int i = 0; i < Rows; ++i) {
      acc[i][0].store_aligned(out);
      acc[i][1].store_aligned(out + kLanes);
      for (int64_t j = 0; j < nj; ++j) store(g, i0 + i, j0 + j, out[j]);
    }
  }

  static void packed_rows(const GemmArgs& g, const float* panel, int64_t i0, int64_t rows,
                          int64_t j0) {
    int64_t i = i0;
    for (; i + kMr <= i0 + rows; i += kMr) packed_tile<kMr>(g, panel, i, j0);
    switch (i0 + rows - i) {
      case 5:
        packed_tile<5>(g, panel, i, j0);
        break;
      case 4:
        packed_tile<4>(g, panel, i, j0);
        break;
      case 3:
        packed_tile<3>(g, panel, i, j0);
        break;
      case 2:
        packed_tile<2>(g, panel, i, j0);
        break;
      case 1:
        packed_tile<1>(g, panel, i, j0);
        break;
      default:
        break;
    }
  }

  static void run_packed(const GemmArgs& g) {
    const int64_t n_panels = (g.n + kNr - 1) / kNr;
    const int64_t n_row_blocks = (g.m + kRowBlock - 1) / kRowBlock;
#pragma omp parallel if (g.m * g.n * g.k > kParallelMacs)
    {
      float* panel =
          static_cast<float*>(std::aligned_alloc(64, size_t((g.k * kNr * 4 + 63) / 64 * 64)));
      int64_t packed_for = -1;
#pragma omp for collapse(2) schedule(static)
      for (int64_t jp = 0; jp < n_panels; ++jp) {
        for (int64_t ib = 0; ib < n_row_blocks; ++ib) {
          if (packed_for != jp) {
            pack_panel(g, jp * kNr, panel);
            packed_for = jp;
          }
          const int64_t i0 = ib * kRowBlock;
          packed_rows(g, panel, i0, std::min(kRowBlock, g.m - i0), jp * kNr);
        }
      }
      std::free(panel);
    }
  }

  static void run(const GemmArgs& g) {
    if (g.m < 4) {
      run_dot(g);
    } else {
      run_packed(g);
    }
  }
};

}  // namespace dsv4::cpu::detail
