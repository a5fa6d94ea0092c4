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

class CpuBackend final : public Backend {
 public:
  std::string_view name() const noexcept override { return "cpu"; }
  DeviceKind device() const noexcept override { return DeviceKind::kCpu; }
  bool supports(const OpDesc& op) const noexcept override {
    return op.kind == OpKind::kGemm && op.weight_format == WeightFormat::kF32;
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
    if (g.w_format != WeightFormat::kF32)
      return Status(StatusCode::kUnsupported,
                    "cpu backend: gemm supports fp32 weights only (quantised weights are "
                    "dequantised at load)");
    if (g.m < 0 || g.n < 0 || g.k < 0 || !g.a || !g.w || !g.c || g.lda < g.k || g.ldw < g.k ||
        g.ldc < g.n)
      return Status(StatusCode::kInvalidArgument, "cpu backend: inconsistent gemm arguments");
    if (g.m == 0 || g.n == 0) return Status::ok();
    kernels().gemm_f32(g);
    return Status::ok();
  }
  Status synchronize() noexcept override { return Status::ok(); }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace dsv4::cpu
