// Status, Result<T> and Error: the error vocabulary of the whole library.
//
// GCC 12 (Debian bookworm) has neither std::expected nor std::format, so these are ours.
// Public C++ entry points return Status / Result<T>; internal helpers may throw dsv4::Error,
// which the public entry points and the C ABI translate back into a Status.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace dsv4 {

// Values are pinned: they equal the C ABI's dsv4_status codes (capi/include/dsv4.h).
enum class StatusCode : int32_t {
  kOk = 0,
  kInvalidArgument = 1,  // a caller-supplied value is wrong (NULL, bad size, bad shape)
  kIo = 2,               // the OS refused: missing file, permission, mmap failure
  kCorruptFile = 3,      // a file is malformed: truncated, bad header, bad JSON, bad offsets
  kInvalidConfig = 4,    // config.json parses but describes an impossible model
  kModelMismatch = 5,    // a checkpoint tensor is missing or has the wrong dtype or shape
  kUnsupported = 6,      // valid, but this build or backend cannot do it
  kOutOfMemory = 7,
  kBufferTooSmall = 8,
  kOutOfRange = 9,  // an index (token id, layer) outside its valid range
  kCancelled = 10,
  kInternal = 11,
};

const char* status_code_name(StatusCode code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const noexcept { return code_ == StatusCode::kOk; }
  explicit operator bool() const noexcept { return is_ok(); }
  StatusCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Thrown inside the library; never crosses a public boundary.
class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  explicit Error(const Status& status) : Error(status.code(), status.message()) {}
  StatusCode code() const noexcept { return code_; }
  Status status() const { return Status(code_, what()); }

 private:
  StatusCode code_;
};

[[noreturn]] inline void fail(StatusCode code, const std::string& message) {
  throw Error(code, message);
}
inline void throw_if_error(const Status& status) {
  if (!status.is_ok()) throw Error(status);
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : state_(std::move(status)) {
    if (std::get<Status>(state_).is_ok())
      state_ = Status(StatusCode::kInternal, "Result built from an OK status without a value");
  }

  bool is_ok() const noexcept { return std::holds_alternative<T>(state_); }
  explicit operator bool() const noexcept { return is_ok(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(state_); }

  T& value() & {
    if (!is_ok()) throw Error(std::get<Status>(state_));
    return std::get<T>(state_);
  }
  const T& value() const& {
    if (!is_ok()) throw Error(std::get<Status>(state_));
    return std::get<T>(state_);
  }
  // By value from a temporary, so `for (x : f().value())` never refers into a destroyed Result.
  T value() && {
    if (!is_ok()) throw Error(std::get<Status>(state_));
    return std::get<T>(std::move(state_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> state_;
};

// Runs `body` (which may throw dsv4::Error or std::bad_alloc) and turns the outcome into a Result.
template <class F>
auto capture_result(F&& body) -> Result<decltype(body())> {
  try {
    return body();
  } catch (const Error& e) {
    return e.status();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, e.what());
  }
}

template <class F>
Status capture_status(F&& body) {
  return capture_result([&] {
           body();
           return true;
         })
      .status();
}

}  // namespace dsv4
