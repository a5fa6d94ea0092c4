// Exceptions must not leave an OpenMP region (that is std::terminate). Scratch that grows inside a
// region can throw std::bad_alloc, so region bodies run through ParallelGuard::run, which keeps
// the first exception; the caller rethrows it after the region, where the backend turns it into
// a status (out of memory is a status, never a termination).
#pragma once

#include <omp.h>

#include <exception>

namespace dsv4::cpu {

// Whether a kernel may open a parallel region of its own: only when it is called outside every
// OpenMP region. Inside one, even an inactive one (an `if (false)` construct, a team of one), its
// region would be nested, and libgomp starts fresh threads for a nested team on every call (their
// thread_local scratch starting empty each time): a decode step of the V4-Flash slice had spent a
// tenth of its time creating and tearing down such threads. Inside an active team the caller
// already has the cores.
inline bool may_fork() noexcept { return omp_get_level() == 0; }

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
