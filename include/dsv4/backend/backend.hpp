// The backend interface: how operators and the model graph reach a device.
//
// Operators and the graph only ever talk to `Backend`; a device (CPU, CUDA, later Ascend) is a
// subclass in src/<device>/ registered in src/backend/registry.cpp. Every method is noexcept and
// reports through Status, so a backend can later be wrapped in a C table for out-of-tree plugins.
// See docs/architecture.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "dsv4/core/format_traits.hpp"
#include "dsv4/core/status.hpp"
#include "dsv4/core/weight_view.hpp"

namespace dsv4 {

enum class DeviceKind : uint8_t { kCpu, kCuda, kAscend };
enum class BufferUse : uint8_t { kWeights, kActivations, kKvCache, kWorkspace };

// Device memory owned by a backend, released through the backend's deleter.
class Buffer {
 public:
  using Deleter = void (*)(void* data, size_t bytes) noexcept;
  Buffer() = default;
  Buffer(void* data, size_t bytes, DeviceKind device, Deleter deleter) noexcept
      : data_(data), bytes_(bytes), device_(device), deleter_(deleter) {}
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
      device_ = other.device_;
      deleter_ = other.deleter_;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void* data() const noexcept { return data_; }
  size_t bytes() const noexcept { return bytes_; }
  DeviceKind device() const noexcept { return device_; }

 private:
  void reset() noexcept {
    if (data_ && deleter_) deleter_(data_, bytes_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
  DeviceKind device_ = DeviceKind::kCpu;
  Deleter deleter_ = nullptr;
};

// C[m, n] = alpha * A[m, k] . W[n, k]^T + beta * C: the shape of every linear layer (weights are
// [out, in] as in the checkpoint, in their stored format). A and C are row-major fp32 with
// leading dimensions in elements; n and k must equal w.out and w.in.
struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  WeightView w;
  float* c = nullptr;
  int64_t ldc = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
};

enum class OpKind : uint8_t { kGemm, kAttention, kMoe, kHyperConnection };

// What a caller asks `supports()` about.
struct OpDesc {
  OpKind kind = OpKind::kGemm;
  WeightFormat weight_format = WeightFormat::kF32;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const noexcept = 0;  // "cpu", "cuda:0"
  virtual DeviceKind device() const noexcept = 0;
  virtual bool supports(const OpDesc& op) const noexcept = 0;
  virtual Result<Buffer> allocate(size_t bytes, BufferUse use) noexcept = 0;
  // Byte copies between host memory and buffers of this backend (host<->device or device<->device).
  virtual Status copy_to_device(void* dst, const void* src, size_t bytes) noexcept = 0;
  virtual Status copy_to_host(void* dst, const void* src, size_t bytes) noexcept = 0;
  virtual Status gemm(const GemmArgs& args) noexcept = 0;
  virtual Status synchronize() noexcept = 0;
};

}  // namespace dsv4
