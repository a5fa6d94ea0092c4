// The CPU kernel table: one entry per operator, filled once at start-up from the best instruction
// set this CPU supports (capped by the DSV4_CPU_ISA environment variable: scalar|sse2|avx2|avx512).
#pragma once

#include <string_view>

#include "dsv4/backend/backend.hpp"

namespace dsv4::cpu {

enum class Isa { kScalar, kSse2, kAvx2, kAvx512 };

struct KernelTable {
  Isa isa;
  void (*gemm)(const GemmArgs&);  // may throw std::bad_alloc (scratch); the backend catches
  void (*attention)(const AttentionArgs&);
};

// Reference (scalar, always compiled, the oracle) and per-ISA kernels.
void gemm_reference(const GemmArgs& args);
void gemm_sse2(const GemmArgs& args);
void gemm_avx2(const GemmArgs& args);
void gemm_avx512(const GemmArgs& args);
void attention_reference(const AttentionArgs& args);
void attention_sse2(const AttentionArgs& args);
void attention_avx2(const AttentionArgs& args);
void attention_avx512(const AttentionArgs& args);

// The best supported ISA, capped by DSV4_CPU_ISA.
Isa detect_isa() noexcept;
std::string_view isa_name(Isa isa) noexcept;
KernelTable kernels_for(Isa isa) noexcept;
// The table in use (initialised on first call).
const KernelTable& kernels() noexcept;

}  // namespace dsv4::cpu
