// Built when DSV4_CUDA is off: the CUDA backend reports itself unavailable instead of the build
// failing (MLX's no_cuda pattern).
#include "dsv4/backend/registry.hpp"

namespace dsv4::cuda {
int device_count() noexcept { return 0; }
std::string unavailable_reason() { return "this build has no CUDA support (DSV4_CUDA=OFF)"; }
Result<std::unique_ptr<Backend>> make_cuda_backend(int) {
  return Status(StatusCode::kUnsupported, unavailable_reason());
}
}  // namespace dsv4::cuda
