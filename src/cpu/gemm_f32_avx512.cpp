// fp32 GEMM for the avx512 instruction set (this file is compiled with avx512 flags only).
#include "cpu_kernels.hpp"
#include "gemm_f32_kernel.hpp"

namespace dsv4::cpu {
void gemm_f32_avx512(const GemmArgs& args) noexcept {
  detail::GemmF32Kernel<xsimd::avx512bw>::run(args);
}
}  // namespace dsv4::cpu
