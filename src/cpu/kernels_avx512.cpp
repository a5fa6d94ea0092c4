// The CPU kernels for the avx512 instruction set (this file is compiled with avx512 flags only).
#include "attention_kernel.hpp"
#include "cpu_kernels.hpp"
#include "dot_kernel.hpp"
#include "gemm_kernel.hpp"
#include "indexer_kernel.hpp"

namespace dsv4::cpu {
void gemm_avx512(const GemmArgs& args) { detail::GemmKernel<xsimd::avx512bw>::run(args); }
void gemm_group_avx512(const GemmArgs* gemms, int64_t count) {
  detail::GemmKernel<xsimd::avx512bw>::run_group(gemms, count);
}
void attention_avx512(const AttentionArgs& args) {
  detail::AttentionKernel<xsimd::avx512bw>::run(args);
}
void indexer_scores_avx512(const IndexerScoresArgs& args) {
  detail::IndexerKernel<xsimd::avx512bw>::run(args);
}
OfficialKernels official_kernels_avx512() { return detail::official_kernel_table(); }
}  // namespace dsv4::cpu
