#include "capi_guard.hpp"

#include "dsv4/backend/registry.hpp"
#include "dsv4/version.hpp"

namespace dsv4::capi {
namespace {
thread_local std::string t_last_error;
}

void set_last_error(const std::string& message) noexcept {
  try {
    t_last_error = message;
  } catch (...) {
    t_last_error.clear();
  }
}
void clear_last_error() noexcept { t_last_error.clear(); }
const char* t_last_error_ptr() noexcept { return t_last_error.c_str(); }

dsv4_status to_c_status(StatusCode code) noexcept { return static_cast<dsv4_status>(code); }

dsv4_status report(const Status& status) noexcept {
  if (status.is_ok()) return DSV4_OK;
  set_last_error(status.message());
  return to_c_status(status.code());
}

}  // namespace dsv4::capi

// The C enum and the C++ enum are one list; keep them in lockstep.
static_assert(DSV4_OK == int(dsv4::StatusCode::kOk));
static_assert(DSV4_ERR_INVALID_ARGUMENT == int(dsv4::StatusCode::kInvalidArgument));
static_assert(DSV4_ERR_IO == int(dsv4::StatusCode::kIo));
static_assert(DSV4_ERR_CORRUPT_FILE == int(dsv4::StatusCode::kCorruptFile));
static_assert(DSV4_ERR_INVALID_CONFIG == int(dsv4::StatusCode::kInvalidConfig));
static_assert(DSV4_ERR_MODEL_MISMATCH == int(dsv4::StatusCode::kModelMismatch));
static_assert(DSV4_ERR_UNSUPPORTED == int(dsv4::StatusCode::kUnsupported));
static_assert(DSV4_ERR_OUT_OF_MEMORY == int(dsv4::StatusCode::kOutOfMemory));
static_assert(DSV4_ERR_BUFFER_TOO_SMALL == int(dsv4::StatusCode::kBufferTooSmall));
static_assert(DSV4_ERR_OUT_OF_RANGE == int(dsv4::StatusCode::kOutOfRange));
static_assert(DSV4_ERR_CANCELLED == int(dsv4::StatusCode::kCancelled));
static_assert(DSV4_ERR_INTERNAL == int(dsv4::StatusCode::kInternal));
static_assert(DSV4_VERSION_MAJOR == dsv4::kVersionMajor &&
              DSV4_VERSION_MINOR == dsv4::kVersionMinor &&
              DSV4_VERSION_PATCH == dsv4::kVersionPatch);

extern "C" {

DSV4_API const char* dsv4_version(void) { return dsv4::kVersionString; }
DSV4_API uint32_t dsv4_version_number(void) { return DSV4_VERSION_NUMBER; }

DSV4_API const char* dsv4_status_name(dsv4_status status) {
  switch (status) {
    case DSV4_OK:
      return "DSV4_OK";
    case DSV4_ERR_INVALID_ARGUMENT:
      return "DSV4_ERR_INVALID_ARGUMENT";
    case DSV4_ERR_IO:
      return "DSV4_ERR_IO";
    case DSV4_ERR_CORRUPT_FILE:
      return "DSV4_ERR_CORRUPT_FILE";
    case DSV4_ERR_INVALID_CONFIG:
      return "DSV4_ERR_INVALID_CONFIG";
    case DSV4_ERR_MODEL_MISMATCH:
      return "DSV4_ERR_MODEL_MISMATCH";
    case DSV4_ERR_UNSUPPORTED:
      return "DSV4_ERR_UNSUPPORTED";
    case DSV4_ERR_OUT_OF_MEMORY:
      return "DSV4_ERR_OUT_OF_MEMORY";
    case DSV4_ERR_BUFFER_TOO_SMALL:
      return "DSV4_ERR_BUFFER_TOO_SMALL";
    case DSV4_ERR_OUT_OF_RANGE:
      return "DSV4_ERR_OUT_OF_RANGE";
    case DSV4_ERR_CANCELLED:
      return "DSV4_ERR_CANCELLED";
    case DSV4_ERR_INTERNAL:
      return "DSV4_ERR_INTERNAL";
  }
  return "DSV4_ERR_UNKNOWN";
}

DSV4_API const char* dsv4_last_error(void) { return dsv4::capi::t_last_error_ptr(); }

DSV4_API dsv4_status dsv4_backend_available(const char* name, int32_t* available) {
  DSV4_CAPI_BEGIN
  if (available) *available = 0;
  dsv4::capi::require(name != nullptr, "dsv4_backend_available: name is NULL");
  dsv4::capi::require(available != nullptr, "dsv4_backend_available: available is NULL");
  *available = dsv4::backend_available(name) ? 1 : 0;
  return DSV4_OK;
  DSV4_CAPI_END
}

}  // extern "C"
