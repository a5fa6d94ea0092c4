// The CPU backend: aligned host memory and the ISA-dispatched kernels of cpu_kernels.hpp.
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu_kernels.hpp"
#include "dsv4/backend/registry.hpp"

namespace dsv4::cpu {
namespace {

constexpr size_t kAlignment = 64;  // one cache line, and a full AVX-512 vector

void free_host(void* p, size_t) noexcept { std::free(p); }

Status check_gemm_args(const GemmArgs& g) noexcept {
  const WeightView& w = g.w;
  const bool block_scaled =
      w.format == WeightFormat::kFp8Block || w.format == WeightFormat::kFp4Block;
  if (g.m < 0 || g.n < 0 || g.k < 0 || !g.a || !w.data || !g.c || g.lda < g.k || g.ldc < g.n ||
      w.out != g.n || w.in != g.k || (block_scaled && !w.scales) ||
      (w.format == WeightFormat::kFp4Block && g.k % 2 != 0))
    return Status(StatusCode::kInvalidArgument, "cpu backend: inconsistent gemm arguments");
  return Status::ok();
}

class CpuBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "cpu"; }
  DeviceKind device() const noexcept override { return DeviceKind::kCpu; }
  bool supports(const OpDesc& op) const noexcept override {
    switch (op.weight_format) {
      case WeightFormat::kF32:
      case WeightFormat::kBF16:
      case WeightFormat::kFp8Block:
      case WeightFormat::kFp4Block:
        return true;
      case WeightFormat::kF16:  // converted to F32 at load; no F16 kernel
        return false;
    }
    return false;
  }
  Result<Buffer> allocate(size_t bytes, BufferUse) noexcept override {
    const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
    if (!p)
      return Status(StatusCode::kOutOfMemory,
                    "cpu backend: cannot allocate " + std::to_string(bytes) + " bytes");
    return Buffer(p, bytes, DeviceKind::kCpu, &free_host);
  }
  Status copy_to_device(void* dst, const void* src, size_t bytes) noexcept override {
    if (bytes) std::memcpy(dst, src, bytes);
    return Status::ok();
  }
  Status copy_to_host(void* dst, const void* src, size_t bytes) noexcept override {
    if (bytes) std::memcpy(dst, src, bytes);
    return Status::ok();
  }
  Status gemm(const GemmArgs& g) noexcept override {
    if (!supports({OpKind::kGemm, g.w.format}))
      return Status(StatusCode::kUnsupported,
                    "cpu backend: gemm has no kernel for weight format " +
                        std::string(weight_format_traits(g.w.format).name));
    if (Status s = check_gemm_args(g); !s) return s;
    if (g.m == 0 || g.n == 0) return Status::ok();
    kernels().gemm(g);
    return Status::ok();
  }
  Status synchronize() noexcept override { return Status::ok(); }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace dsv4::cpu
