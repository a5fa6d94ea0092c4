// GEMM/GEMV on the CPU backend for every weight format, reported as a ratio to this machine's
// limits measured in the same run: decode-shaped GEMV (m = 1) is bound by reading the weights, so
// its weight bytes/s (GB/s) are compared with the streaming-read bandwidth measured right before
// and after it (roofline_bw_GB/s, the larger); prefill-shaped GEMM (GFLOP/s) with the fp32 FMA
// peak (roofline_fma_GFLOP/s). Also the two compute-bound operators of a long-context decode step,
// the lightning indexer and attention, against the same FMA peak.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "dsv4/backend/registry.hpp"
#include "dsv4/bench/roofline.hpp"
#include "dsv4/core/huge_pages.hpp"
#include "dsv4/core/kv_codec.hpp"

namespace {

using dsv4::WeightFormat;

// Random codes of `format` (finite ones only) with unit scales. FP8 codes are normal draws
// quantised as a checkpoint's are, with the standard deviation at 56 codes (a block whose largest
// weight is 8σ maps it to 448): about 2·10^-4 of them are zero or subnormal, as in trained
// weights. Their share matters: AVX-512 corrects them after the decode in the 64-byte units
// that hold any (fp8_unit_times_256 in gemm_kernel.hpp); here about one unit in eighty does.
// (Uniform codes, as before, would put one code in sixteen there, and nearly every unit.)
struct Matrix {
  // Aligned and in huge pages, as a loaded model's repacked weights are (and its copies too).
  std::vector<uint8_t, dsv4::HugePageAllocator<uint8_t>> data;
  std::vector<uint8_t> scales;
  dsv4::WeightView view;
  // In `layout`: kRows (the checkpoint's own order), kTiled or kRowUnits. A model loaded on the
  // CPU backend holds short-row F32/BF16 matrices tiled and F32/BF16 rows of 4 KiB or more in
  // rows; FP8 tiled, but in rows on Intel's cores; FP4 tiled, but in row units on Intel's cores
  // (Backend::gemm_weight_layout), all in huge pages.
  Matrix(WeightFormat format, int64_t out, int64_t in, dsv4::WeightLayout layout) {
    view.format = format;
    view.out = out;
    view.in = in;
    data.resize(size_t(out * view.row_bytes()));
    std::mt19937 rng(3);
    if (format == WeightFormat::kFp8Block) {
      std::normal_distribution<float> normal(0.0f, 56.0f);
      for (auto& b : data)
        b = dsv4::float_to_fp8_e4m3(std::clamp(normal(rng), -dsv4::kFp8E4M3Max, dsv4::kFp8E4M3Max));
    } else {
      for (auto& b : data) b = uint8_t(rng());
    }
    if (format == WeightFormat::kF32 || format == WeightFormat::kBF16) {
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      for (int64_t i = 0; i < out * in; ++i) {
        const float v = dist(rng);
        if (format == WeightFormat::kF32) {
          std::memcpy(data.data() + 4 * i, &v, 4);
        } else {
          const uint16_t b = dsv4::float_to_bf16(v);
          std::memcpy(data.data() + 2 * i, &b, 2);
        }
      }
    }
    view.scale_cols = format == WeightFormat::kFp8Block ? (in + 127) / 128 : (in + 31) / 32;
    scales.assign(size_t(std::max<int64_t>(view.scale_rows(), 0) * view.scale_cols), 120);
    view.data = data.data();
    view.scales = scales.data();
    if (layout != dsv4::WeightLayout::kRows && view.tileable()) {
      decltype(data) units(dsv4::weight_data_bytes(view, layout));
      view = dsv4::units_weights(view, layout, units.data());
      data = std::move(units);
    }
  }
};

void bench_gemm(benchmark::State& state) {
  const auto format = WeightFormat(state.range(0));
  const int64_t m = state.range(1), n = state.range(2), k = state.range(3);
  const bool from_memory = state.range(4) != 0;
  const auto layout = dsv4::WeightLayout(state.range(5));
  auto backend = dsv4::create_backend("cpu").value();
  // Decode shapes cycle through copies totalling >= 1 GiB, so the weights come from memory and
  // not from the 260 MiB L3, as in a real decode step. The in-cache rows (from_memory = 0, one
  // copy small enough for L2) show the decode's own speed: the ceiling the kernel would reach if
  // memory were infinitely fast.
  const Matrix first(format, n, k, layout);
  const size_t copies =
      from_memory ? std::max<size_t>(1, (size_t(1) << 30) / first.view.bytes()) : 1;
  std::vector<Matrix> ws(copies, first);
  std::vector<float> a(size_t(m * k)), c(size_t(m * n));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : a) x = dist(rng);
  dsv4::GemmArgs g;
  g.m = m, g.n = n, g.k = k, g.a = a.data(), g.lda = k, g.c = c.data(), g.ldc = n;
  // The limits right before and right after the timing (the larger is reported): the streaming
  // read for decode shapes, the FMA peak for all.
  const double read_before = from_memory ? dsv4::bench::process_read_meter().measure() : 0.0;
  const double fma_before = dsv4::bench::measure_fma_peak();
  size_t next = 0;
  for (auto _ : state) {
    const Matrix& w = ws[next];
    next = (next + 1) % ws.size();
    g.w = w.view;
    g.w.data = w.data.data();
    g.w.scales = w.scales.data();
    if (!backend->gemm(g)) state.SkipWithError("gemm failed");
    benchmark::DoNotOptimize(c.data());
  }
  const Matrix& w = first;
  const char* layout_name = w.view.tiled() ? " tiled" : w.view.in_units() ? " row-units" : "";
  state.SetLabel(std::string(dsv4::weight_format_traits(format).name) + layout_name);
  const double flops = 2.0 * double(m * n * k);
  const double bytes = double(w.view.bytes());
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  if (from_memory)
    state.counters["roofline_bw_GB/s"] =
        std::max(read_before, dsv4::bench::process_read_meter().measure()) / 1e9;
  state.counters["roofline_fma_GFLOP/s"] =
      std::max(fma_before, dsv4::bench::measure_fma_peak()) / 1e9;
}

// The lightning indexer's top-k for one decode query over `entries` compressed entries (a CSA
// layer at 4× that context) with V4-Flash's shapes (64 heads × 128, top-512, cache blocks of 512
// entries), the keys stored in `format` (f32, bf16, or packed: rotated e2m1 + ue8m0, as
// --kv-format packed stores them). Its q·K products are a GEMM of 64 × entries × 128 that
// dominates the call: compare GFLOP/s with roofline_fma_GFLOP/s.
void bench_indexer(benchmark::State& state) {
  const int64_t entries = state.range(0), nh = 64, c = 128, top_k = 512, block = 512;
  const auto format = dsv4::CacheFormat(state.range(1));
  const dsv4::EntryCodec codec{format, c, 0, format == dsv4::CacheFormat::kFp4};
  auto backend = dsv4::create_backend("cpu").value();
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<uint8_t>> blocks;
  std::vector<float> key(static_cast<size_t>(c));
  for (int64_t first = 0; first < entries; first += block) {
    blocks.emplace_back(size_t(block) * codec.bytes());
    for (int64_t j = 0; j < block; ++j) {
      for (auto& x : key) x = normal(rng);
      codec.encode(key.data(), blocks.back().data() + size_t(j) * codec.bytes());
    }
  }
  std::vector<const uint8_t*> table;
  for (const auto& b : blocks) table.push_back(b.data());
  std::vector<float> q(static_cast<size_t>(nh * c)), u(static_cast<size_t>(nh));
  for (auto& x : q) x = normal(rng);
  for (auto& x : u) x = normal(rng);
  int64_t visible = entries, n_selected = 0;
  std::vector<int32_t> selected(static_cast<size_t>(top_k));
  dsv4::IndexerTopkArgs a;
  a.q = q.data(), a.weights = u.data(), a.n_queries = 1, a.n_heads = nh, a.head_dim = c;
  a.top_k = top_k, a.key_block_entries = table.data(), a.key_codec = codec;
  a.block_entries = block, a.n_visible = &visible;
  a.selected = selected.data(), a.n_selected = &n_selected;
  const double fma_before = dsv4::bench::measure_fma_peak();
  for (auto _ : state) {
    if (!backend->indexer_topk(a)) state.SkipWithError("indexer_topk failed");
    benchmark::DoNotOptimize(selected.data());
  }
  state.SetLabel(format == dsv4::CacheFormat::kFp4    ? "packed"
                 : format == dsv4::CacheFormat::kBF16 ? "bf16"
                                                      : "f32");
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(nh * c * entries) / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roofline_fma_GFLOP/s"] =
      std::max(fma_before, dsv4::bench::measure_fma_peak()) / 1e9;
}

// Attention with sinks for one decode query over `keys` shared key/value entries (f32, as the
// slice's default cache stores them) with V4-Flash's heads (64 × 512): a layer of the slice's
// 64K decode attends its window (128) and 512 compressed entries (CSA: the indexer's top-512;
// HCA: 64K / 128). Scores and values are 2 · 64 × keys × 512 multiply-adds: compare GFLOP/s with
// roofline_fma_GFLOP/s.
void bench_attention(benchmark::State& state) {
  const int64_t n_keys = state.range(0), heads = 64, d = 512;
  auto backend = dsv4::create_backend("cpu").value();
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(heads * d)), sinks(static_cast<size_t>(heads)),
      values(static_cast<size_t>(n_keys * d)), out(static_cast<size_t>(heads * d));
  for (auto& x : q) x = normal(rng);
  for (auto& x : sinks) x = normal(rng);
  for (auto& x : values) x = normal(rng);
  std::vector<const float*> keys;
  for (int64_t j = 0; j < n_keys; ++j) keys.push_back(values.data() + j * d);
  dsv4::AttentionArgs a;
  a.q = q.data(), a.n_heads = heads, a.head_dim = d, a.keys = keys.data(), a.n_keys = n_keys;
  a.sinks = sinks.data(), a.out = out.data();
  const double fma_before = dsv4::bench::measure_fma_peak();
  for (auto _ : state) {
    if (!backend->attention(a)) state.SkipWithError("attention failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * double(heads * d * n_keys) / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roofline_fma_GFLOP/s"] =
      std::max(fma_before, dsv4::bench::measure_fma_peak()) / 1e9;
}

}  // namespace

constexpr int kTiled = int(dsv4::WeightLayout::kTiled), kRows = int(dsv4::WeightLayout::kRows),
              kRowUnits = int(dsv4::WeightLayout::kRowUnits);

// Decode shapes (weights streamed once): compare GB/s with roofline_bw_GB/s. The weights are
// tiled, as a loaded model holds the FP8 and FP4 ones (these F32 and BF16 ones it holds in rows:
// below).
BENCHMARK(bench_gemm)
    ->ArgNames({"fmt", "m", "n", "k", "mem", "layout"})
    ->Args({int(WeightFormat::kF32), 1, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kBF16), 1, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp8Block), 1, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp8Block), 1, 8192, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 1, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 1, 8192, 4096, 1, kTiled})
    // FP4 as Intel's cores hold it (fp4_in_row_units).
    ->Args({int(WeightFormat::kFp4Block), 1, 4096, 4096, 1, kRowUnits})
    ->Args({int(WeightFormat::kFp4Block), 1, 8192, 4096, 1, kRowUnits})
    // The V4-Flash slice's FP8 matrices of 1024 inputs: attention's and the indexer's wq_b.
    ->Args({int(WeightFormat::kFp8Block), 1, 32768, 1024, 1, kTiled})
    ->Args({int(WeightFormat::kFp8Block), 1, 8192, 1024, 1, kTiled})
    ->Unit(benchmark::kMicrosecond);
// The same decode with the weights in rows: as a loaded model holds F32 and BF16 rows of 4 KiB or
// more, and every format with --weights stored (there in the checkpoint's mapping, not huge pages).
BENCHMARK(bench_gemm)
    ->ArgNames({"fmt", "m", "n", "k", "mem", "layout"})
    ->Args({int(WeightFormat::kF32), 1, 4096, 4096, 1, kRows})
    ->Args({int(WeightFormat::kBF16), 1, 4096, 4096, 1, kRows})
    ->Args({int(WeightFormat::kFp8Block), 1, 4096, 4096, 1, kRows})
    ->Args({int(WeightFormat::kFp4Block), 1, 4096, 4096, 1, kRows})
    ->Args({int(WeightFormat::kFp4Block), 6, 2048, 4096, 1, kRows})
    ->Args({int(WeightFormat::kFp8Block), 6, 2048, 4096, 1, kRows})
    ->Args({int(WeightFormat::kFp8Block), 12, 2048, 4096, 1, kRows})
    ->Unit(benchmark::kMicrosecond);
// The same decode from weights that stay in L2 (256 rows): the kernel's compute ceiling.
BENCHMARK(bench_gemm)
    ->ArgNames({"fmt", "m", "n", "k", "mem", "layout"})
    ->Args({int(WeightFormat::kBF16), 1, 256, 4096, 0, kTiled})
    ->Args({int(WeightFormat::kFp8Block), 1, 256, 4096, 0, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 1, 256, 4096, 0, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 1, 256, 4096, 0, kRowUnits})
    ->Unit(benchmark::kMicrosecond);
// Prefill shapes: compare GFLOP/s with roofline_fma_GFLOP/s.
BENCHMARK(bench_gemm)
    ->ArgNames({"fmt", "m", "n", "k", "mem", "layout"})
    ->Args({int(WeightFormat::kF32), 256, 1024, 1024, 0, kTiled})
    ->Args({int(WeightFormat::kF32), 512, 512, 2048, 0, kTiled})
    ->Args({int(WeightFormat::kFp8Block), 256, 1024, 1024, 0, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 256, 1024, 1024, 0, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 256, 1024, 1024, 0, kRowUnits})
    ->Unit(benchmark::kMillisecond);
// A routed expert's rows in a prefill chunk (256 tokens × top-6 over 256 experts: about 6).
BENCHMARK(bench_gemm)
    ->ArgNames({"fmt", "m", "n", "k", "mem", "layout"})
    ->Args({int(WeightFormat::kFp4Block), 6, 2048, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 12, 2048, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 6, 2048, 4096, 1, kRowUnits})
    ->Args({int(WeightFormat::kFp4Block), 12, 2048, 4096, 1, kRowUnits})
    ->Args({int(WeightFormat::kFp4Block), 16, 2048, 4096, 1, kRowUnits})
    ->Args({int(WeightFormat::kFp4Block), 24, 2048, 4096, 1, kRowUnits})
    ->Args({int(WeightFormat::kFp4Block), 32, 2048, 4096, 1, kRowUnits})
    ->Args({int(WeightFormat::kFp8Block), 6, 2048, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp8Block), 12, 2048, 4096, 1, kTiled})
    ->Unit(benchmark::kMicrosecond);
// A batched decode step (Session::decode_batch) of 2, 4 and 8 sequences: the weights are read once
// for all rows; compare the time with the m = 1 rows above.
BENCHMARK(bench_gemm)
    ->ArgNames({"fmt", "m", "n", "k", "mem", "layout"})
    ->Args({int(WeightFormat::kBF16), 4, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kBF16), 8, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp8Block), 2, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp8Block), 4, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kFp4Block), 4, 4096, 4096, 1, kTiled})
    ->Args({int(WeightFormat::kBF16), 1, 129280, 256, 1, kTiled})
    ->Args({int(WeightFormat::kBF16), 4, 129280, 256, 1, kTiled})
    ->Unit(benchmark::kMicrosecond);
// The indexer of a decode step at contexts 16K and 64K (4096 and 16384 compressed entries).
BENCHMARK(bench_indexer)
    ->ArgNames({"entries", "kv"})
    ->Args({4096, int(dsv4::CacheFormat::kF32)})
    ->Args({16384, int(dsv4::CacheFormat::kF32)})
    ->Args({16384, int(dsv4::CacheFormat::kBF16)})
    ->Args({16384, int(dsv4::CacheFormat::kFp4)})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();  // both threads work: rates per wall-clock second
// Attention of a decode step: the slice's 1K CSA layer (window 128 + 256 entries) and a 64K
// layer (window 128 + 512).
BENCHMARK(bench_attention)
    ->ArgNames({"keys"})
    ->Arg(384)
    ->Arg(640)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_MAIN();
