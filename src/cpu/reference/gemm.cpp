// Scalar GEMM over every weight format: the oracle every other GEMM is tested against. Weights
// are dequantised element by element (WeightView::at) and products accumulated in double, so it is
// a strictly better reference than the fp32 kernels.
#include "../cpu_kernels.hpp"

namespace dsv4::cpu {

void gemm_reference(const GemmArgs& g) noexcept {
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double sum = 0.0;
      for (int64_t p = 0; p < g.k; ++p) sum += double(g.a[i * g.lda + p]) * double(g.w.at(j, p));
      float* c = g.c + i * g.ldc + j;
      *c = float(g.alpha * sum + (g.beta == 0.0f ? 0.0 : double(g.beta) * *c));
    }
  }
}

}  // namespace dsv4::cpu
