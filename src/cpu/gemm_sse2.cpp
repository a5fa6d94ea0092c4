// GEMM over every weight format for the sse2 instruction set (compiled with sse2 flags only).
#include "cpu_kernels.hpp"
#include "gemm_kernel.hpp"

namespace dsv4::cpu {
void gemm_sse2(const GemmArgs& args) noexcept { detail::GemmKernel<xsimd::sse2>::run(args); }
}  // namespace dsv4::cpu
