// Runs on machines with a CUDA device; elsewhere prints why and exits 77, which ctest reports as
// "Skipped" (SKIP_RETURN_CODE) instead of a silent pass.
#include <cstdio>
#include <vector>

#include "dsv4/backend/registry.hpp"

int main() {
  if (!dsv4::backend_available("cuda")) {
    std::printf("skipped: no CUDA device (%s)\n", dsv4::backend_unavailable_reason("cuda").c_str());
    return 77;
  }
  auto backend = dsv4::create_backend("cuda");
  if (!backend) {
    std::printf("FAIL: %s\n", backend.status().to_string().c_str());
    return 1;
  }
  auto buffer = backend.value()->allocate(4096, dsv4::BufferUse::kActivations);
  if (!buffer) {
    std::printf("FAIL: %s\n", buffer.status().to_string().c_str());
    return 1;
  }
  std::vector<unsigned char> src(4096), dst(4096);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<unsigned char>(i * 13);
  if (!backend.value()->copy_to_device(buffer->data(), src.data(), src.size()) ||
      !backend.value()->copy_to_host(dst.data(), buffer->data(), dst.size()) || src != dst) {
    std::printf("FAIL: device round trip\n");
    return 1;
  }
  std::printf("cuda backend %s: allocation and copies OK\n",
              std::string(backend.value()->name()).c_str());
  return 0;
}
