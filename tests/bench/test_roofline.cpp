// The machine limits that benchmark ratios are taken against (include/dsv4/bench/roofline.hpp).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dsv4/bench/roofline.hpp"

namespace {

// What the FMA-peak loop must compute: `chains` chains, chain j starting at j + 1, each step one
// fused multiply-add, every lane alike, summed chain by chain and lane by lane in double.
double independent_chains(int64_t iters, int lanes, int chains) {
  double total = 0.0;
  for (int j = 0; j < chains; ++j) {
    float x = float(j + 1);
    for (int64_t i = 0; i < iters; ++i) x = std::fma(x, 1.000001f, 0.999999f);
    for (int l = 0; l < lanes; ++l) total += double(x);
  }
  return total;
}

}  // namespace

// The peak loop once ran eight identical chains, which GCC merged into one: the "peak" was then
// eight FMAs per FMA latency, twice the truth on a core with one 512-bit FMA per cycle. Distinct
// chains cannot be merged; this checks that the loop computes every one of them.
TEST_CASE("the FMA-peak loop runs independent chains", "[bench]") {
  __builtin_cpu_init();
  const int64_t iters = 1000;
  if (__builtin_cpu_supports("avx512f")) {
    CHECK(dsv4::bench::fma_loop_avx512(iters) ==
          independent_chains(iters, 16, dsv4::bench::kFmaChainsAvx512));
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    CHECK(dsv4::bench::fma_loop_avx2(iters) ==
          independent_chains(iters, 8, dsv4::bench::kFmaChainsAvx2));
  }
  const double peak = dsv4::bench::measure_fma_peak();
  CHECK(std::isfinite(peak));
  CHECK(peak > 0.0);
}

// The streaming read ran only with AVX-512 (a CPU without it got SIGILL from `dsv4 bench`); it now
// falls back to the baseline ISA. Both loops XOR every vector of the buffer.
TEST_CASE("the streaming-read loop XORs every vector, with and without AVX-512", "[bench]") {
  using dsv4::bench::Vec8i;
  std::vector<Vec8i> v(64);
  uint64_t want = 0;
  for (size_t i = 0; i < v.size(); ++i)
    for (int l = 0; l < 8; ++l) {
      v[i][l] = (long long)(i * 8 + size_t(l)) * 0x9E3779B97F4A7C15ll;
      want ^= uint64_t(v[i][l]);
    }
  CHECK(dsv4::bench::xor_vectors(v.data(), v.size()) == want);
  CHECK(dsv4::bench::xor_stream(v.data(), v.size()) == want);
}
