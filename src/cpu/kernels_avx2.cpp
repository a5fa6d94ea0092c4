// The CPU kernels for the avx2 instruction set (this file is compiled with avx2 flags only).
#include "attention_kernel.hpp"
#include "cpu_kernels.hpp"
#include "dot_kernel.hpp"
#include "gemm_kernel.hpp"
#include "indexer_kernel.hpp"

namespace dsv4::cpu {
void gemm_avx2(const GemmArgs& args) { detail::GemmKernel<xsimd::avx2>::run(args); }
void gemm_group_avx2(const GemmArgs* gemms, int64_t count) {
  detail::GemmKernel<xsimd::avx2>::run_group(gemms, count);
}
void attention_avx2(const AttentionArgs& args) { detail::AttentionKernel<xsimd::avx2>::run(args); }
void indexer_scores_avx2(const IndexerScoresArgs& args) {
  detail::IndexerKernel<xsimd::avx2>::run(args);
}
OfficialKernels official_kernels_avx2() { return detail::official_kernel_table(); }
}  // namespace dsv4::cpu
