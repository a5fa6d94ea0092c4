// Decode and prefill throughput of the embedded V4-shaped model on the CPU backend.
//
// Decode is memory-bound: each token reads the weights it uses (attention, compressors, indexer,
// router, shared expert, its k routed experts, the head) plus its visible KV entries
// (dsv4::decode_traffic). The benchmark reports the achieved bandwidth as a ratio to the
// streaming-read roofline measured in the same run; prefill reports the linear layers' GFLOP/s
// against the FMA peak.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "dsv4/bench/roofline.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/model/traffic.hpp"

namespace {

// Random weights in the official formats (FP8 attention and shared expert, FP4 routed experts,
// BF16 embeddings, head, compressors, router), built once per process on first use.
std::shared_ptr<const dsv4::Model> official_model(const dsv4::ModelConfig& config) {
  return dsv4::Model::from_weights(
             config, dsv4::random_weights(config, 2026, dsv4::RandomWeightFormats::official()))
      .value();
}
std::shared_ptr<const dsv4::Model> model_for(int64_t which) {
  static std::shared_ptr<const dsv4::Model> demo, slice;
  if (which == 0) {
    if (!demo) demo = official_model(dsv4::demo_model_config(12));
    return demo;
  }
  if (!slice) slice = official_model(dsv4::v4_flash_slice_config(2));  // about 7.4 GB
  return slice;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = dist(rng);
  return t;
}

// Decode at a context filled synthetically (random entries: the same bytes and work as a real
// cache at that context; prefill of 64K tokens of the slice would take hours here).
void bench_decode(benchmark::State& state) {
  auto model = model_for(state.range(0));
  const auto& c = model->config();
  const int64_t context = state.range(1);
  dsv4::SessionOptions options;
  options.kv_format = dsv4::KvFormat(state.range(2));
  auto session = dsv4::Session::create(model, options).value();
  if (!session->fill_synthetic_cache(context, 3)) state.SkipWithError("fill failed");
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  int32_t token = 1;
  // The streaming-read limit right before and right after the timing (the larger is reported).
  const double read_before = dsv4::bench::process_read_meter().measure();
  for (auto _ : state) {
    if (!session->append({&token, 1}, logits.data())) state.SkipWithError("decode failed");
    token = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const double bytes =
      dsv4::decode_traffic(c, model->weights(), context, options.kv_format).total();
  state.SetLabel(std::string(dsv4::kv_format_name(options.kv_format)));
  state.counters["tokens/s"] =
      benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roofline_GB/s"] =
      std::max(read_before, dsv4::bench::process_read_meter().measure()) / 1e9;
}

void bench_prefill(benchmark::State& state) {
  auto model = model_for(state.range(0));
  const int64_t n = state.range(1);
  const auto prompt = random_tokens(n, model->config().vocab_size);
  const double fma_before = dsv4::bench::measure_fma_peak();  // the larger of before and after
  for (auto _ : state) {
    auto session = dsv4::Session::create(model).value();
    if (!session->append(prompt, nullptr)) state.SkipWithError("prefill failed");
  }
  state.counters["tokens/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  const double flops = dsv4::linear_flops_per_token(model->config(), model->weights()) * double(n);
  state.counters["linear_GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roofline_fma_GFLOP/s"] =
      std::max(fma_before, dsv4::bench::measure_fma_peak()) / 1e9;
}

// Sequential write + fsync of `bytes` bytes to `path`: the disk's limit a save is compared with.
double measure_write_bandwidth(const std::string& path, size_t bytes) {
  std::vector<char> buffer(size_t(1) << 20, 1);
  const auto t0 = std::chrono::steady_clock::now();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0.0;
  for (size_t done = 0; done < bytes; done += buffer.size())
    std::fwrite(buffer.data(), 1, std::min(buffer.size(), bytes - done), f);
  std::fflush(f);
  ::fsync(::fileno(f));
  std::fclose(f);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::remove(path.c_str());
  return double(bytes) / seconds;
}

// Saving and restoring a session of the demo model at a long context (packed cache, filled
// synthetically): MB/s of file against a plain sequential write + fsync of the same size, for
// each SWA strategy (full; checkpoint every 1024 tokens, which at this context rebuilds the
// window as of the last checkpoint when saving and recomputes the tokens since when loading;
// none, which recomputes the rebuild span when loading).
void bench_session_file(benchmark::State& state) {
  auto model = model_for(0);
  dsv4::SessionOptions options;
  options.kv_format = dsv4::KvFormat::kPacked;
  // swa 3: checkpoints every 1024 tokens kept by the session, so a save writes them as they are.
  if (state.range(2) == 3) options.window_checkpoint_interval = 1024;
  auto session = dsv4::Session::create(model, options).value();
  // A synthetic context to the last multiple of 1024, then the rest as a real prefill.
  const int64_t context = state.range(1), synthetic = context / 1024 * 1024;
  if (!session->fill_synthetic_cache(synthetic, 3)) state.SkipWithError("fill failed");
  if (!session->append(random_tokens(context - synthetic, model->config().vocab_size),
                       dsv4::AppendOptions{dsv4::OutputMode::kNone}, nullptr))
    state.SkipWithError("prefill failed");
  dsv4::SaveOptions save_options;
  constexpr dsv4::SwaStrategy kSaveStrategy[] = {
      dsv4::SwaStrategy::kFull, dsv4::SwaStrategy::kCheckpoint, dsv4::SwaStrategy::kNone,
      dsv4::SwaStrategy::kCheckpoint};
  save_options.swa_strategy = kSaveStrategy[state.range(2)];
  save_options.checkpoint_interval = 1024;
  const std::string path =
      (std::filesystem::temp_directory_path() / "dsv4-bench.dsv4session").string();
  if (!session->save(path, save_options)) state.SkipWithError("save failed");
  const size_t bytes = std::filesystem::file_size(path);
  const bool save = state.range(0) == 0;
  for (auto _ : state) {
    if (save) {
      if (!session->save(path, save_options)) state.SkipWithError("save failed");
    } else {
      if (!dsv4::Session::load(model, path, options)) state.SkipWithError("load failed");
    }
  }
  static const char* const kStrategies[] = {"full", "checkpoint:1024", "none",
                                            "checkpoint:1024 kept"};
  state.SetLabel(std::string(save ? "save " : "load ") + kStrategies[state.range(2)]);
  state.counters["rebuild_span"] = double(session->rebuild_span());
  state.counters["file_MB"] = double(bytes) / 1e6;
  state.counters["MB/s"] =
      benchmark::Counter(double(bytes) / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["write_fsync_MB/s"] = measure_write_bandwidth(path + ".roofline", bytes) / 1e6;
  std::remove(path.c_str());
}

}  // namespace

// mode 0 = save, 1 = load; context in tokens; swa 0 full, 1 checkpoint every 1024, 2 none, 3
// checkpoint every 1024 kept by the session (a save writes it; the file is the same as swa 1's).
BENCHMARK(bench_session_file)
    ->ArgNames({"mode", "context", "swa"})
    ->Args({0, 262144, 0})
    ->Args({1, 262144, 0})
    ->Args({0, 262844, 0})
    ->Args({1, 262844, 0})
    ->Args({0, 262844, 1})
    ->Args({1, 262844, 1})
    ->Args({0, 262844, 2})
    ->Args({1, 262844, 2})
    ->Args({0, 262844, 3})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);
// Compare GB/s with roofline_GB/s: the ratio is how close decode runs to the memory limit.
// model 0: the demo model; model 1: the V4-Flash slice (real widths, 2 layers: CSA + HCA).
// kv: 0 f32, 1 bf16, 2 packed (the demo model at 64K is where the cache's reads matter most).
BENCHMARK(bench_decode)
    ->ArgNames({"model", "context", "kv"})
    ->Args({0, 1024, 0})
    ->Args({0, 8192, 0})
    ->Args({0, 65536, 0})
    ->Args({0, 65536, 2})
    ->Args({1, 1024, 0})
    ->Args({1, 65536, 0})
    ->Args({1, 65536, 2})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);
// Compare linear_GFLOP/s with roofline_fma_GFLOP/s.
BENCHMARK(bench_prefill)
    ->ArgNames({"model", "tokens"})
    ->Args({0, 2048})
    ->Args({1, 128})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2);
BENCHMARK_MAIN();
