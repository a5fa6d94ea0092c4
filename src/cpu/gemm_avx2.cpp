// GEMM over every weight format for the avx2 instruction set (compiled with avx2 flags only).
#include "cpu_kernels.hpp"
#include "gemm_kernel.hpp"

namespace dsv4::cpu {
void gemm_avx2(const GemmArgs& args) noexcept { detail::GemmKernel<xsimd::avx2>::run(args); }
}  // namespace dsv4::cpu
