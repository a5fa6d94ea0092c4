// fp32 GEMM/GEMV on the CPU backend, reported as a ratio to this machine's measured limits:
// decode-shaped GEMV (m = 1) is bound by reading the weights, so it is compared with streaming
// bandwidth; prefill-shaped GEMM is compared with the FMA peak.
#include <benchmark/benchmark.h>

#include <random>

#include "dsv4/backend/registry.hpp"
#include "roofline.hpp"

namespace {

void bench_gemm(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  auto backend = dsv4::create_backend("cpu").value();
  std::vector<float> a(size_t(m * k)), w(size_t(n * k)), c(size_t(m * n));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : a) x = dist(rng);
  for (auto& x : w) x = dist(rng);
  dsv4::GemmArgs g;
  g.m = m, g.n = n, g.k = k, g.a = a.data(), g.lda = k, g.w = w.data(), g.ldw = k, g.c = c.data(),
  g.ldc = n;
  for (auto _ : state) {
    if (!backend->gemm(g)) state.SkipWithError("gemm failed");
    benchmark::DoNotOptimize(c.data());
  }
  const double flops = 2.0 * double(m * n * k);
  const double bytes = double(n * k) * sizeof(float);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roofline_bw_GB/s"] = dsv4::bench::measure_read_bandwidth() / 1e9;
  state.counters["roofline_fma_GFLOP/s"] = dsv4::bench::measure_fma_peak() / 1e9;
}

}  // namespace

// Decode shapes (weights streamed once): compare GB/s with roofline_bw_GB/s.
BENCHMARK(bench_gemm)->Args({1, 4096, 4096})->Args({1, 1024, 4096})->Unit(benchmark::kMicrosecond);
// Prefill shapes: compare GFLOP/s with roofline_fma_GFLOP/s.
BENCHMARK(bench_gemm)
    ->Args({256, 1024, 1024})
    ->Args({512, 512, 2048})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
