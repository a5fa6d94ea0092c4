// Machine limits measured at run time (streaming-read bandwidth, fp32 FMA peak), so benchmarks and
// `dsv4 bench` report ratios to rooflines measured in the same run, never taken on trust.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace dsv4::bench {

// Streaming-read bandwidth in bytes/s over a buffer much larger than the caches (1 GiB: this
// machine's L3 is 260 MiB), all threads. Eight independent integer accumulators per thread, so the
// loop is bound by loads, not by an addition chain.
typedef long long Vec8i __attribute__((vector_size(64)));
// XOR of 64-byte vectors with four independent accumulators: one load per vector, nothing else.
__attribute__((target("avx512f"))) inline uint64_t xor_stream(const Vec8i* v, size_t n) {
  Vec8i a{}, b{}, c{}, d{};
  for (size_t i = 0; i + 4 <= n; i += 4) {
    a ^= v[i];
    b ^= v[i + 1];
    c ^= v[i + 2];
    d ^= v[i + 3];
  }
  const Vec8i x = a ^ b ^ c ^ d;
  uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r ^= uint64_t(x[i]);
  return r;
}
inline double measure_read_bandwidth() {
  static double cached = 0.0;
  if (cached > 0.0) return cached;
  const size_t n = (size_t(1) << 30) / sizeof(Vec8i);  // 1 GiB
  Vec8i* data = static_cast<Vec8i*>(std::aligned_alloc(64, n * sizeof(Vec8i)));
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) data[i] = Vec8i{} + (long long)i;
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t total = 0;
#pragma omp parallel reduction(^ : total)
    {
      const size_t nt = size_t(omp_get_num_threads()), id = size_t(omp_get_thread_num());
      const size_t chunk = (n / nt) & ~size_t(3);
      total ^= xor_stream(data + id * chunk, chunk);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (total == 42) best = -1.0;  // keeps the loop alive
    best = std::max(best, double(n * sizeof(Vec8i)) / seconds);
  }
  std::free(data);
  return cached = best;
}

// fp32 FMA throughput in FLOP/s, all threads, with AVX-512 when the CPU has it.
typedef float Vec16 __attribute__((vector_size(64)));
__attribute__((target("avx512f"))) inline double fma_loop_avx512(int64_t iters) {
  Vec16 acc[8] = {};
  const Vec16 a = Vec16{} + 1.000001f, b = Vec16{} + 0.999999f;
  for (int64_t i = 0; i < iters; ++i)
    for (auto& x : acc) x = x * a + b;
  float s = 0.0f;
  for (auto& x : acc) s += x[0];
  return double(s);
}
inline double measure_fma_peak() {
  static double cached = 0.0;
  if (cached > 0.0) return cached;
  const int64_t iters = 20'000'000;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) return 0.0;
  const auto t0 = std::chrono::steady_clock::now();
  double sink = 0.0;
#pragma omp parallel reduction(+ : sink)
  sink += fma_loop_avx512(iters);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sink == 12345.0) return 0.0;
  return cached = double(iters) * 8 * 16 * 2 * omp_get_max_threads() / seconds;
}

}  // namespace dsv4::bench
