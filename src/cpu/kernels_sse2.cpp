// The CPU kernels for the sse2 instruction set (this file is compiled with sse2 flags only).
#include "attention_kernel.hpp"
#include "cpu_kernels.hpp"
#include "dot_kernel.hpp"
#include "gemm_kernel.hpp"

namespace dsv4::cpu {
void gemm_sse2(const GemmArgs& args) { detail::GemmKernel<xsimd::sse2>::run(args); }
void attention_sse2(const AttentionArgs& args) { detail::AttentionKernel<xsimd::sse2>::run(args); }
double dot_f64_sse2(const float* a, const float* b, int64_t n) { return detail::dot_f64(a, b, n); }
double dot_bf16_f64_sse2(const float* a, const uint8_t* w, int64_t n) {
  return detail::dot_bf16_f64(a, w, n);
}
void fp8_values_sse2(const uint8_t* codes, int64_t k, float* out) {
  detail::fp8_values(codes, k, out);
}
void fp4_values_sse2(const uint8_t* packed, int64_t k, float* out) {
  detail::fp4_values(packed, k, out);
}
void block_sums_sse2(const float* aq, const float* w, int64_t k, int64_t block, double* sums) {
  detail::block_sums(aq, w, k, block, sums);
}
void fp8_block_sums_sse2(const float* aq, const uint8_t* codes, int64_t k, double* sums) {
  detail::fp8_block_sums(aq, codes, k, sums);
}
void fp4_block_sums_sse2(const float* aq_even, const float* aq_odd, const uint8_t* packed,
                         int64_t k, double* sums) {
  detail::fp4_block_sums(aq_even, aq_odd, packed, k, sums);
}
}  // namespace dsv4::cpu
