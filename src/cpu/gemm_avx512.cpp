// GEMM over every weight format for the avx512 instruction set (compiled with avx512 flags only).
#include "cpu_kernels.hpp"
#include "gemm_kernel.hpp"

namespace dsv4::cpu {
void gemm_avx512(const GemmArgs& args) noexcept { detail::GemmKernel<xsimd::avx512bw>::run(args); }
}  // namespace dsv4::cpu
