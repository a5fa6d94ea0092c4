#include "dsv4/backend/registry.hpp"

#include <map>
#include <mutex>

namespace dsv4 {

std::string_view op_kind_name(OpKind kind) noexcept {
  switch (kind) {
    case OpKind::kGemm:
      return "gemm";
    case OpKind::kEmbed:
      return "embed";
    case OpKind::kRmsNorm:
      return "rms_norm";
    case OpKind::kRope:
      return "rope";
    case OpKind::kAttention:
      return "attention";
    case OpKind::kIndexerTopk:
      return "indexer_topk";
    case OpKind::kCompressPool:
      return "compress_pool";
    case OpKind::kMhcPre:
      return "mhc_pre";
    case OpKind::kMhcPost:
      return "mhc_post";
    case OpKind::kMhcHead:
      return "mhc_head";
    case OpKind::kSwiglu:
      return "swiglu";
  }
  return "?";
}

std::vector<std::string> compiled_backends() {
#if defined(DSV4_WITH_CUDA)
  return {"cpu", "cuda"};
#else
  return {"cpu"};
#endif
}

namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, BackendFactory, std::less<>>& registered() {
  static std::map<std::string, BackendFactory, std::less<>> factories;
  return factories;
}
BackendFactory find_registered(std::string_view name) {
  const std::lock_guard<std::mutex> lock(registry_mutex());
  const auto it = registered().find(name);
  return it == registered().end() ? BackendFactory{} : it->second;
}
}  // namespace

void register_backend(const std::string& name, BackendFactory factory) {
  const std::lock_guard<std::mutex> lock(registry_mutex());
  registered()[name] = std::move(factory);
}

std::vector<std::string> best_backend_candidates() {
  std::vector<std::string> names;
  if (backend_available("cuda")) names.push_back("cuda");
  names.push_back("cpu");
  return names;
}

bool backend_available(std::string_view name) noexcept {
  if (name == "cpu") return true;
  if (find_registered(name)) return true;
  if (name == "cuda") return cuda::device_count() > 0;
  return false;
}

std::string backend_unavailable_reason(std::string_view name) {
  if (name == "cpu") return "";
  if (name == "cuda") return cuda::device_count() > 0 ? "" : cuda::unavailable_reason();
  return "unknown backend \"" + std::string(name) + "\" (known: cpu, cuda)";
}

Result<std::unique_ptr<Backend>> create_backend(std::string_view name) {
  if (name == "best") name = backend_available("cuda") ? "cuda" : "cpu";
  if (BackendFactory factory = find_registered(name)) return factory();
  if (name == "cpu") return cpu::make_cpu_backend();
  if (name == "cuda") {
    if (!backend_available("cuda"))
      return Status(StatusCode::kUnsupported,
                    "cuda backend unavailable: " + cuda::unavailable_reason());
    return cuda::make_cuda_backend(0);
  }
  return Status(StatusCode::kInvalidArgument, backend_unavailable_reason(name));
}

}  // namespace dsv4
