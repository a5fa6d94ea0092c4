#include <cstdlib>
#include <string>

#include "cpu_kernels.hpp"
#include "dsv4/backend/registry.hpp"

namespace dsv4::cpu {
namespace {

Isa best_supported_isa() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return Isa::kAvx2;
  return Isa::kSse2;
#else
  return Isa::kScalar;
#endif
}

Isa cap_from_env(Isa best) noexcept {
  const char* cap = std::getenv("DSV4_CPU_ISA");
  if (!cap) return best;
  const std::string s(cap);
  Isa wanted = best;
  if (s == "scalar")
    wanted = Isa::kScalar;
  else if (s == "sse2")
    wanted = Isa::kSse2;
  else if (s == "avx2")
    wanted = Isa::kAvx2;
  else if (s == "avx512")
    wanted = Isa::kAvx512;
  return wanted < best ? wanted : best;
}

}  // namespace

Isa detect_isa() noexcept { return cap_from_env(best_supported_isa()); }

std::string_view isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kSse2:
      return "sse2";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

KernelTable kernels_for(Isa isa) noexcept {
  switch (isa) {
    case Isa::kAvx512:
      return {isa,
              &gemm_avx512,
              &attention_avx512,
              &dot_f64_avx512,
              &dot_bf16_f64_avx512,
              &fp8_values_avx512,
              &fp4_values_avx512,
              &block_sums_avx512,
              &fp8_block_sums_avx512,
              &fp4_block_sums_avx512};
    case Isa::kAvx2:
      return {isa,
              &gemm_avx2,
              &attention_avx2,
              &dot_f64_avx2,
              &dot_bf16_f64_avx2,
              &fp8_values_avx2,
              &fp4_values_avx2,
              &block_sums_avx2,
              &fp8_block_sums_avx2,
              &fp4_block_sums_avx2};
    case Isa::kSse2:
      return {isa,
              &gemm_sse2,
              &attention_sse2,
              &dot_f64_sse2,
              &dot_bf16_f64_sse2,
              &fp8_values_sse2,
              &fp4_values_sse2,
              &block_sums_sse2,
              &fp8_block_sums_sse2,
              &fp4_block_sums_sse2};
    case Isa::kScalar:
      break;
  }
  return {Isa::kScalar,
          &gemm_reference,
          &attention_reference,
          &dot_f64_reference,
          &dot_bf16_f64_reference,
          &fp8_values_reference,
          &fp4_values_reference,
          &block_sums_reference,
          &fp8_block_sums_reference,
          &fp4_block_sums_reference};
}

const KernelTable& kernels() noexcept {
  static const KernelTable table = kernels_for(detect_isa());
  return table;
}

std::string_view active_isa() noexcept { return isa_name(kernels().isa); }

}  // namespace dsv4::cpu
