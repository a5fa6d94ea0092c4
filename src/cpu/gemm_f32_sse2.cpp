// fp32 GEMM for the sse2 instruction set (this file is compiled with sse2 flags only).
#include "cpu_kernels.hpp"
#include "gemm_f32_kernel.hpp"

namespace dsv4::cpu {
void gemm_f32_sse2(const GemmArgs& args) noexcept { detail::GemmF32Kernel<xsimd::sse2>::run(args); }
}  // namespace dsv4::cpu
