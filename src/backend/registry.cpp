#include "dsv4/backend/registry.hpp"

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

bool backend_available(std::string_view name) noexcept {
  if (name == "cpu") return true;
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
