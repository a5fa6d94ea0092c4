// DSV4_CAPI_BEGIN / DSV4_CAPI_END wrap every C entry point so that no exception crosses the ABI
// and every failure leaves its message in the thread-local last-error slot.
#pragma once

#include <cstring>
#include <new>
#include <string>

#include "dsv4.h"
#include "dsv4/core/status.hpp"

namespace dsv4::capi {

void set_last_error(const std::string& message) noexcept;
void clear_last_error() noexcept;
const char* t_last_error_ptr() noexcept;
dsv4_status to_c_status(StatusCode code) noexcept;
// Records the status message and returns its C code.
dsv4_status report(const Status& status) noexcept;

inline void require(bool condition, const char* message) {
  if (!condition) fail(StatusCode::kInvalidArgument, message);
}

// The largest struct_size a caller may pass: newer headers only append a few fields, so a larger
// value is a bug (an uninitialised struct) and must not make us read far past the struct.
inline constexpr size_t kMaxParamsStructSize = 1024;

// Copies a caller's params struct of `caller_size` bytes into a zeroed struct of our version:
// sizes below v1 or above kMaxParamsStructSize are rejected, larger structs than ours are accepted
// only when the unknown tail is zero.
template <class Params>
Params read_params(const Params* in, Params defaults, size_t v1_size, const char* what) {
  if (!in) return defaults;
  const size_t caller_size = in->struct_size;
  if (caller_size < v1_size)
    fail(StatusCode::kInvalidArgument,
         std::string(what) + ".struct_size " + std::to_string(caller_size) +
             " is smaller than any released version (" + std::to_string(v1_size) + ")");
  if (caller_size > kMaxParamsStructSize)
    fail(StatusCode::kInvalidArgument, std::string(what) + ".struct_size " +
                                           std::to_string(caller_size) + " is above the ceiling " +
                                           std::to_string(kMaxParamsStructSize));
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(in);
  for (size_t i = sizeof(Params); i < caller_size; ++i)
    if (bytes[i] != 0)
      fail(StatusCode::kUnsupported,
           std::string(what) + " sets fields this library version does not know");
  Params out{};
  std::memcpy(&out, in, caller_size < sizeof(Params) ? caller_size : sizeof(Params));
  out.struct_size = sizeof(Params);
  return out;
}

}  // namespace dsv4::capi

#define DSV4_CAPI_BEGIN \
  try {                 \
    ::dsv4::capi::clear_last_error();
#define DSV4_CAPI_END                                                                     \
  }                                                                                       \
  catch (const ::dsv4::Error& e) {                                                        \
    return ::dsv4::capi::report(e.status());                                              \
  }                                                                                       \
  catch (const std::bad_alloc&) {                                                         \
    return ::dsv4::capi::report(                                                          \
        ::dsv4::Status(::dsv4::StatusCode::kOutOfMemory, "out of memory"));               \
  }                                                                                       \
  catch (const std::exception& e) {                                                       \
    return ::dsv4::capi::report(::dsv4::Status(::dsv4::StatusCode::kInternal, e.what())); \
  }                                                                                       \
  catch (...) {                                                                           \
    return ::dsv4::capi::report(                                                          \
        ::dsv4::Status(::dsv4::StatusCode::kInternal, "unknown exception"));              \
  }
