// Rooflines measured in the same run as the benchmark they normalise, never taken on trust.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace dsv4::bench {

// Streaming-read bandwidth in bytes/s over a buffer much larger than the caches, all threads.
inline double measure_read_bandwidth() {
  static double cached = 0.0;
  if (cached > 0.0) return cached;
  const size_t n = size_t(256) << 20 >> 2;  // 256 MiB of floats
  std::vector<float> data(n, 1.0f);
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0.0f;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (size_t i = 0; i < n; i += 16) {
      float s = 0.0f;
      for (size_t j = 0; j < 16; ++j) s += data[i + j];
      total += s;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (total < 0.0f) return 0.0;  // keeps the loop alive
    best = std::max(best, double(n * sizeof(float)) / seconds);
  }
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
