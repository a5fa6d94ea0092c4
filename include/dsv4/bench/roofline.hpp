// Machine limits measured at run time (streaming-read bandwidth, fp32 FMA peak), so benchmarks and
// `dsv4 bench` report ratios to rooflines measured in the same run, never taken on trust.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "dsv4/core/huge_pages.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dsv4::bench {

// Streaming-read bandwidth in bytes/s over a buffer much larger than the caches (1 GiB; the
// largest L3 we have run on is 260 MiB), all threads. The buffer is in huge pages, as a loaded
// model's repacked weights are: in 4 KiB pages the same loop read 20-25% less on the AMD host
// (TLB misses), and the kernels reading huge pages then beat their "limit".
typedef long long Vec8i __attribute__((vector_size(64)));
// XOR of 64-byte vectors with four independent accumulators: one load per vector, nothing else.
[[gnu::always_inline]] inline uint64_t xor_vectors(const Vec8i* v, size_t n) {
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
#if defined(__x86_64__)
__attribute__((target("avx512f"))) inline uint64_t xor_vectors_avx512(const Vec8i* v, size_t n) {
  return xor_vectors(v, n);
}
#endif
// With 512-bit loads where the CPU has them (one load per vector), else the baseline ISA's.
inline uint64_t xor_stream(const Vec8i* v, size_t n) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return xor_vectors_avx512(v, n);
#endif
  return xor_vectors(v, n);
}
// The streaming-read limit, measured on demand over a buffer it holds (1 GiB in huge pages). A
// shared host's bandwidth moves within one run (the AMD host's flipped between about 30 and 55
// GB/s minute by minute), so a figure is compared with the larger of the limits measured right
// before and right after it, not with one taken at start-up.
class ReadBandwidthMeter {
 public:
  // Written first by the threads that read it (no zero-fill by one thread before), so on a NUMA
  // machine each thread's part lies on its own node, as with the static split of measure().
  ReadBandwidthMeter() : bytes_(huge_page_bytes(kVectors * sizeof(Vec8i))) {
    Vec8i* data = vectors();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < kVectors; ++i) data[i] = Vec8i{} + (long long)i;
  }
  // Bytes/s, all threads: the best of five passes.
  double measure() const {
    double best = 0.0;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      uint64_t total = 0;
#pragma omp parallel reduction(^ : total)
      {
        const size_t nt = size_t(omp_get_num_threads()), id = size_t(omp_get_thread_num());
        const size_t chunk = (kVectors / nt) & ~size_t(3);
        total ^= xor_stream(vectors() + id * chunk, chunk);
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (total == 42) best = -1.0;  // keeps the loop alive
      best = std::max(best, double(kVectors * sizeof(Vec8i)) / seconds);
    }
    return best;
  }

 private:
  static constexpr size_t kVectors = (size_t(1) << 30) / sizeof(Vec8i);
  Vec8i* vectors() const { return reinterpret_cast<Vec8i*>(bytes_.get()); }
  std::shared_ptr<uint8_t[]> bytes_;
};

// One meter for a whole benchmark process: its buffer is allocated and touched once.
inline const ReadBandwidthMeter& process_read_meter() {
  static const ReadBandwidthMeter meter;
  return meter;
}

// fp32 FMA throughput in FLOP/s, all threads: the peak of the instruction the GEMM kernels use
// (vfmadd on 16 lanes with AVX-512, else 8 lanes with AVX2+FMA; 0 on a CPU with neither).
// Independent chains per thread cover the FMA latency of every core we know (latency 4 × 2 pipes
// needs 8, Zen 2/3's 5 × 2 needs 10): 16 with AVX-512, 12 with AVX2, whose 16 registers must also
// hold the two constants (16 chains there left two of them in memory, each FMA waiting on a
// store and a reload: the AVX2 peak read about a fifth low). Each chain starts from its own value
// and the constants come through a volatile, so the compiler can neither fold the loop nor merge
// the chains: an earlier version started every chain from zero, GCC computed one chain and reused
// it for all eight, and the "peak" was 8 FMAs per FMA latency: right by chance on a core with two
// 512-bit FMA pipes, twice the truth on one with a single 512-bit FMA per cycle (AMD Zen 4: 466
// GFLOP/s reported on two cores, 234 measured with independent chains).
inline constexpr int kFmaChainsAvx512 = 16, kFmaChainsAvx2 = 12;
template <class Vec, int kLanes, int kChains>
inline double sum_lanes(const Vec (&acc)[kChains]) {
  double s = 0.0;
  for (const Vec& x : acc)
    for (int l = 0; l < kLanes; ++l) s += double(x[l]);
  return s;
}
__attribute__((target("avx512f"))) inline double fma_loop_avx512(int64_t iters) {
  volatile float a_in = 1.000001f, b_in = 0.999999f;
  const __m512 a = _mm512_set1_ps(a_in), b = _mm512_set1_ps(b_in);
  __m512 acc[kFmaChainsAvx512];
  for (int j = 0; j < kFmaChainsAvx512; ++j) acc[j] = _mm512_set1_ps(float(j + 1));
  for (int64_t i = 0; i < iters; ++i)
    for (auto& x : acc) x = _mm512_fmadd_ps(x, a, b);
  return sum_lanes<__m512, 16, kFmaChainsAvx512>(acc);
}
__attribute__((target("avx2,fma"))) inline double fma_loop_avx2(int64_t iters) {
  volatile float a_in = 1.000001f, b_in = 0.999999f;
  const __m256 a = _mm256_set1_ps(a_in), b = _mm256_set1_ps(b_in);
  __m256 acc[kFmaChainsAvx2];
  for (int j = 0; j < kFmaChainsAvx2; ++j) acc[j] = _mm256_set1_ps(float(j + 1));
  for (int64_t i = 0; i < iters; ++i)
    for (auto& x : acc) x = _mm256_fmadd_ps(x, a, b);
  return sum_lanes<__m256, 8, kFmaChainsAvx2>(acc);
}
// Measured anew at each call (about 0.1 s), the best of three passes: like the read, a shared
// host's compute moves within a run, so a figure is compared with the peak measured around it.
// The peak is that of the widest FMA the CPU kernels may use: AVX-512 where the CPU has it,
// unless DSV4_CPU_ISA caps the kernels below it; then AVX2's (also for the sse2 and scalar caps,
// which have no FMA path of their own to measure).
inline double measure_fma_peak() {
  __builtin_cpu_init();
  const char* cap = std::getenv("DSV4_CPU_ISA");
  const std::string_view wanted = cap ? cap : "";
  const bool capped = wanted == "avx2" || wanted == "sse2" || wanted == "scalar";
  const bool avx512 = __builtin_cpu_supports("avx512f") && !capped;
  if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0.0;
  const int64_t iters = 10'000'000;
  const int lanes = avx512 ? 16 : 8, chains = avx512 ? kFmaChainsAvx512 : kFmaChainsAvx2;
  double best = 0.0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    double sink = 0.0;
#pragma omp parallel reduction(+ : sink)
    sink += avx512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sink == 12345.0) return 0.0;  // keeps the loops alive
    best = std::max(best, double(iters) * chains * lanes * 2 * omp_get_max_threads() / seconds);
  }
  return best;
}

}  // namespace dsv4::bench
