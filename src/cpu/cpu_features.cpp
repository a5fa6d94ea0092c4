#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu_kernels.hpp"
#include "dsv4/backend/registry.hpp"

namespace dsv4::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
bool has_f16c() noexcept {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
}
#endif

Isa best_supported_isa() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
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

CpuVendor read_vendor() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return CpuVendor::kOther;
  char id[13] = {};
  std::memcpy(id, &ebx, 4);
  std::memcpy(id + 4, &edx, 4);
  std::memcpy(id + 8, &ecx, 4);
  if (std::string_view(id) == "GenuineIntel") return CpuVendor::kIntel;
  if (std::string_view(id) == "AuthenticAMD") return CpuVendor::kAmd;
#endif
  return CpuVendor::kOther;
}

}  // namespace

CpuVendor cpu_vendor() noexcept {
  static const CpuVendor vendor = read_vendor();
  return vendor;
}

// On AMD's Zen 4 a prefetch into L2 2 KiB ahead served every format best (sixth round). On the
// Intel host (Sapphire Rapids class) a prefetch into L1 512 bytes ahead read BF16 and FP8 8-11%
// faster (docs/performance.md, twelfth round). FP4, whose decode is the slowest, there reads its
// rows (fp4_in_row_units) fastest with a second prefetch into L2 4 KiB ahead: 18% faster than
// with the L1 prefetch alone; tiled FP4 keeps the L2 prefetch, against which the L1 one had read
// 15-20% slower. The same second prefetch read BF16 rows as stored 5% faster, FP8 4% slower
// (thirteenth round).
GemvPrefetch gemv_prefetch(WeightFormat format, WeightLayout layout) noexcept {
  if (cpu_vendor() != CpuVendor::kIntel) return {};  // into L2, 2 KiB ahead
  if (format == WeightFormat::kBF16 && layout == WeightLayout::kRows) return {512, true, 4096};
  if (format != WeightFormat::kFp4Block) return {512, true};
  return layout == WeightLayout::kTiled ? GemvPrefetch{} : GemvPrefetch{512, true, 4096};
}

// Tiled FP8 (one stream per group of four rows) read 5% faster than four rows as stored on Zen 4
// (seventh round), but 20-25% slower on the Intel host (twelfth round), where the four rows are
// four streams for the L2 streamer to run ahead in. FP4 likewise, in rows of transposed units so
// that its AVX-512 kernel still applies: 4096×4096 on two threads 25% faster than tiled there
// (thirteenth round).
bool fp8_rows_as_stored() noexcept { return cpu_vendor() == CpuVendor::kIntel; }
bool fp4_in_row_units() noexcept { return cpu_vendor() == CpuVendor::kIntel; }

// FP8 GEMMs of 5-16 activation rows (batched decode, few-row expert GEMMs): on Zen 4 the decoded
// buffer was 20% faster at 5, 6 and 12 rows (second round); on the Intel host the register tiles
// are: 2048×4096 at 6 rows 1209-1288 → 723-839 µs, 8 rows 1548-1626 → 954-977, 12 rows
// 1680-1733 → 1332-1527 (fourteenth round).
int64_t fp8_register_rows() noexcept { return cpu_vendor() == CpuVendor::kIntel ? 16 : 4; }

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
              &gemm_group_avx512,
              &attention_avx512,
              &indexer_scores_avx512,
              official_kernels_avx512()};
    case Isa::kAvx2:
      return {isa,
              &gemm_avx2,
              &gemm_group_avx2,
              &attention_avx2,
              &indexer_scores_avx2,
              official_kernels_avx2()};
    case Isa::kSse2:
      return {isa,
              &gemm_sse2,
              &gemm_group_sse2,
              &attention_sse2,
              &indexer_scores_sse2,
              official_kernels_sse2()};
    case Isa::kScalar:
      break;
  }
  return {Isa::kScalar,         &gemm_reference,           &gemm_group_reference,
          &attention_reference, &indexer_scores_reference, official_kernels_reference()};
}

const KernelTable& kernels() noexcept {
  static const KernelTable table = kernels_for(detect_isa());
  return table;
}

std::string_view active_isa() noexcept { return isa_name(kernels().isa); }

}  // namespace dsv4::cpu
