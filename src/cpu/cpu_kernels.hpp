// The CPU kernel table: one entry per operator, filled once at start-up from the best instruction
// set this CPU supports (capped by the DSV4_CPU_ISA environment variable: scalar|sse2|avx2|avx512).
#pragma once

#include <cstdint>
#include <string_view>

#include "dsv4/backend/backend.hpp"

namespace dsv4::cpu {

enum class Isa { kScalar, kSse2, kAvx2, kAvx512 };

// The official numerics' kernels (dot_kernel.hpp, compiled per ISA; scalar references in
// reference/kernels.cpp).
struct OfficialKernels {
  // Σ double(a_i)·double(b_i): the recipe's exact dot products.
  double (*dot_f64)(const float* a, const float* b, int64_t n);
  // The same against n bf16 values (little-endian, any alignment).
  double (*dot_bf16_f64)(const float* a, const uint8_t* w, int64_t n);
  // The FP8 / FP4 GEMMs: a weight row's code values (scales not applied), and the per-block sums
  // Σ aq·w of a row, exact in double (aq: act_quant's e4m3 values).
  void (*fp8_values)(const uint8_t* codes, int64_t k, float* out);
  void (*fp4_values)(const uint8_t* packed, int64_t k, float* out);
  void (*block_sums)(const float* aq, const float* w, int64_t k, int64_t block, double* sums);
  // The same for one activation row, decoding the codes on the fly (FP4: the row split into its
  // even and odd elements).
  void (*fp8_block_sums)(const float* aq, const uint8_t* codes, int64_t k, double* sums);
  void (*fp4_block_sums)(const float* aq_even, const float* aq_odd, const uint8_t* packed,
                         int64_t k, double* sums);
};

// The lightning indexer's head sums of nq queries against one block of keys (the indexer top-k
// streams over the cache's blocks with it): totals[t·ld + j] = Σ_h u[t, h] · ReLU(q[t, h] · K_j),
// before the 1/sqrt(c). Each total is computed alike whatever nq and the number of keys.
struct IndexerScoresArgs {
  const float* q = nullptr;  // [nq, n_heads, c]
  const float* u = nullptr;  // [nq, n_heads]
  int64_t n_queries = 0, n_heads = 0;
  WeightView keys;  // [n keys, c], any format the GEMM reads
  float* totals = nullptr;
  int64_t ld = 0;
};

struct KernelTable {
  Isa isa;
  void (*gemm)(const GemmArgs&);  // may throw std::bad_alloc (scratch); the backend catches
  // Independent GEMMs as one piece of work (Backend::gemm_group), the same bits as gemm on each.
  void (*gemm_group)(const GemmArgs* gemms, int64_t count);
  void (*attention)(const AttentionArgs&);
  void (*indexer_scores)(const IndexerScoresArgs&);  // may throw std::bad_alloc (scratch)
  OfficialKernels official;
};

// Reference (scalar, always compiled, the oracle) and per-ISA kernels.
void gemm_reference(const GemmArgs& args);
void gemm_sse2(const GemmArgs& args);
void gemm_avx2(const GemmArgs& args);
void gemm_avx512(const GemmArgs& args);
void gemm_group_reference(const GemmArgs* gemms, int64_t count);
void gemm_group_sse2(const GemmArgs* gemms, int64_t count);
void gemm_group_avx2(const GemmArgs* gemms, int64_t count);
void gemm_group_avx512(const GemmArgs* gemms, int64_t count);
void attention_reference(const AttentionArgs& args);
void attention_sse2(const AttentionArgs& args);
void attention_avx2(const AttentionArgs& args);
void attention_avx512(const AttentionArgs& args);
void indexer_scores_reference(const IndexerScoresArgs& args);
void indexer_scores_sse2(const IndexerScoresArgs& args);
void indexer_scores_avx2(const IndexerScoresArgs& args);
void indexer_scores_avx512(const IndexerScoresArgs& args);
OfficialKernels official_kernels_reference();
OfficialKernels official_kernels_sse2();
OfficialKernels official_kernels_avx2();
OfficialKernels official_kernels_avx512();

// Whose cores these are: the GEMV's weight streams want different prefetches and layouts on
// Intel's and AMD's cores (measured on each; docs/performance.md, twelfth round).
enum class CpuVendor { kIntel, kAmd, kOther };
CpuVendor cpu_vendor() noexcept;

// How far ahead of its reads (in row bytes) the GEMV prefetches each weight row, and whether
// into L1 or into L2; `far`, where not 0, a second prefetch into L2 that far ahead (rows not
// tiled only). The defaults are every CPU's but Intel's.
struct GemvPrefetch {
  int64_t bytes = 2048;
  bool into_l1 = false;
  int64_t far = 0;
};
GemvPrefetch gemv_prefetch(WeightFormat format, WeightLayout layout) noexcept;
// Whether the CPU backend keeps FP8 matrices' rows as stored rather than tiled (exact numerics).
bool fp8_rows_as_stored() noexcept;
// Whether the CPU backend keeps FP4 matrices in rows of transposed units (WeightLayout::kRowUnits)
// rather than tiled (exact numerics).
bool fp4_in_row_units() noexcept;
// Up to how many activation rows an FP8 GEMM decodes its weights in registers (GemmKernel's
// register path) rather than once into the prefill buffer.
int64_t fp8_register_rows() noexcept;

// The best supported ISA, capped by DSV4_CPU_ISA.
Isa detect_isa() noexcept;
std::string_view isa_name(Isa isa) noexcept;
KernelTable kernels_for(Isa isa) noexcept;
// The table in use (initialised on first call).
const KernelTable& kernels() noexcept;

}  // namespace dsv4::cpu
