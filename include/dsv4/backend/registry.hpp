// Backend registry: which backends this build has and which can run here.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/backend/backend.hpp"

namespace dsv4 {

// Names compiled into this build ("cpu", and "cuda" when built with DSV4_CUDA).
std::vector<std::string> compiled_backends();
// True when the backend is compiled in and a device for it is present.
bool backend_available(std::string_view name) noexcept;
// Why `name` is unavailable ("" when it is available).
std::string backend_unavailable_reason(std::string_view name);
// "cpu", "cuda", a registered name, or "best" (the first available of cuda, cpu; a model load
// with "best" also skips backends that lack an operator the model needs).
Result<std::unique_ptr<Backend>> create_backend(std::string_view name);

// Out-of-tree backends (plugins, test doubles) register a factory under a new name; the name then
// works wherever a backend name is taken. Registering an existing name replaces the factory.
using BackendFactory = std::function<Result<std::unique_ptr<Backend>>()>;
void register_backend(const std::string& name, BackendFactory factory);
// The names to try for "best", most capable first: cuda (when available), then cpu.
std::vector<std::string> best_backend_candidates();

namespace cpu {
std::unique_ptr<Backend> make_cpu_backend();
// The instruction set the CPU kernels were dispatched to ("avx512", "avx2", "baseline"),
// capped by DSV4_CPU_ISA.
std::string_view active_isa() noexcept;
}  // namespace cpu

namespace cuda {
// Number of usable CUDA devices (0 without a driver or device, or in a build without CUDA).
int device_count() noexcept;
std::string unavailable_reason();
Result<std::unique_ptr<Backend>> make_cuda_backend(int device);
}  // namespace cuda

}  // namespace dsv4
