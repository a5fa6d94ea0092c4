// Exceptions must not leave an OpenMP region (that is std::terminate). Scratch that grows inside a
// region can throw std::bad_alloc, so region bodies run through ParallelGuard::run, which keeps
// the first exception; the caller rethrows it after the region, where the backend turns it into
// a status (out of memory is a status, never a termination).
#pragma once

#include <exception>

namespace dsv4::cpu {

class ParallelGuard {
 public:
  template <class F>
  void run(F&& body) noexcept {
    try {
      body();
    } catch (...) {
#pragma omp critical(dsv4_parallel_guard)
      if (!first_) first_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::exception_ptr first_;
};

}  // namespace dsv4::cpu
