// CUDA backend: device memory and copies. Kernels arrive operator by operator; until then
// supports() answers false for every operator and the model runs on the CPU backend.
#include <cuda_runtime.h>

#include <string>

#include "dsv4/backend/registry.hpp"

namespace dsv4::cuda {
namespace {

Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::ok();
  return Status(err == cudaErrorMemoryAllocation ? StatusCode::kOutOfMemory : StatusCode::kInternal,
                std::string(what) + ": " + cudaGetErrorString(err));
}

void free_device(void* p, size_t) noexcept { (void)cudaFree(p); }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device), name_("cuda:" + std::to_string(device)) {}
  std::string_view name() const noexcept override { return name_; }
  DeviceKind device() const noexcept override { return DeviceKind::kCuda; }
  bool supports(const OpDesc&) const noexcept override { return false; }
  Result<Buffer> allocate(size_t bytes, BufferUse) noexcept override {
    void* p = nullptr;
    if (Status s = cuda_status(cudaSetDevice(device_), "cudaSetDevice"); !s) return s;
    if (Status s = cuda_status(cudaMalloc(&p, bytes), "cudaMalloc"); !s) return s;
    return Buffer(p, bytes, DeviceKind::kCuda, &free_device);
  }
  Status copy_to_device(void* dst, const void* src, size_t bytes) noexcept override {
    return cuda_status(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy");
  }
  Status copy_to_host(void* dst, const void* src, size_t bytes) noexcept override {
    return cuda_status(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy");
  }
  Status gemm(const GemmArgs&) noexcept override {
    return Status(StatusCode::kUnsupported, "cuda backend: gemm kernels are not implemented yet");
  }
  Status synchronize() noexcept override {
    return cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }

 private:
  int device_;
  std::string name_;
};

}  // namespace

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error so later calls are not confused
    return 0;
  }
  return n;
}

std::string unavailable_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("no CUDA device: ") + cudaGetErrorString(err);
  }
  return n == 0 ? "no CUDA device" : "";
}

Result<std::unique_ptr<Backend>> make_cuda_backend(int device) {
  if (device < 0 || device >= device_count())
    return Status(StatusCode::kUnsupported, "no CUDA device " + std::to_string(device));
  return std::unique_ptr<Backend>(new CudaBackend(device));
}

}  // namespace dsv4::cuda
