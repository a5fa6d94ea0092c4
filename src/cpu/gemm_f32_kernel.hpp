// The fp32 GEMM microkernel, written once over an xsimd architecture tag and instantiated in one
// translation unit per ISA (gemm_f32_<isa>.cpp, each with its own compiler flags). The Arch tag
// is part of every symbol, so the per-ISA copies never collide at link time.
//
// C[m, n] = alpha * A[m, k] . W[n, k]^T + beta * C: every output is a dot product along k of a row
// of A and a row of W, both contiguous, so the kernel keeps a 4x4 tile of fp32 vector
// accumulators and reduces them horizontally at the end.
#pragma once

#include <xsimd/xsimd.hpp>

#include "dsv4/backend/backend.hpp"

namespace dsv4::cpu::detail {

template <class Arch>
struct GemmF32Kernel {
  using Batch = xsimd::batch<float, Arch>;
  static constexpr int64_t kLanes = int64_t(Batch::size);
  static constexpr int64_t kTile = 4;

  // One output tile of up to 4x4, rows [i0, i0+mi), columns [j0, j0+nj).
  static void tile(const GemmArgs& g, int64_t i0, int64_t mi, int64_t j0, int64_t nj) {
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
        float* c = g.c + (i0 + i) * g.ldc + (j0 + j);
        *c = g.alpha * sum + (g.beta == 0.0f ? 0.0f : g.beta * *c);
      }
    }
  }

  static void run(const GemmArgs& g) {
    const int64_t n_tiles = (g.n + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (g.m * g.n * g.k > (1 << 16))
    for (int64_t jt = 0; jt < n_tiles; ++jt) {
      const int64_t j0 = jt * kTile;
      const int64_t nj = std::min(kTile, g.n - j0);
      for (int64_t i0 = 0; i0 < g.m; i0 += kTile) tile(g, i0, std::min(kTile, g.m - i0), j0, nj);
    }
  }
};

}  // namespace dsv4::cpu::detail
