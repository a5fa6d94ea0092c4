// Loading a generated quantised checkpoint of more than 1 GB: the resident memory the load adds
// (VmRSS growth) against the checkpoint's size on disk, right after the load and after a prefill
// that reads every weight, its peak during the load (VmHWM growth), and the load time (header
// checks, the non-finite scan, views into the mapping, and with repack:1 the copy of every GEMM
// weight into the CPU backend's tiled layout). Weights stay in their stored formats, so the ratio
// after the prefill is about 1 in both layouts; repacking releases the mapped pages as it copies,
// so its peak stays near 1 too.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "dsv4/bench/memory_probe.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/model.hpp"
#include "dsv4/model/session.hpp"

namespace {

size_t rss_bytes() { return dsv4::bench::proc_status_bytes("VmRSS"); }

// A V4-shaped model of about 1.7 GB in the official formats (FP8 attention, FP4 experts).
dsv4::ModelConfig big_config() {
  dsv4::ModelConfig c = dsv4::demo_model_config(8);
  c.hidden_size = 2048;
  c.num_attention_heads = 16;
  c.head_dim = 256;
  c.qk_rope_head_dim = 32;
  c.index_head_dim = 64;
  c.q_lora_rank = 512;
  c.o_groups = 4;
  c.o_lora_rank = 512;
  c.n_routed_experts = 64;
  c.num_experts_per_tok = 4;
  c.moe_intermediate_size = 1024;
  c.vocab_size = 16384;
  return c;
}

void bench_load_quantised(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() / "dsv4-bench-load";
  const dsv4::ModelConfig config = big_config();
  {
    const auto weights = dsv4::random_weights(config, 5, dsv4::RandomWeightFormats::official());
    if (!dsv4::write_checkpoint(dir.string(), config, weights))
      state.SkipWithError("cannot write the checkpoint");
  }
  const double file_bytes = double(std::filesystem::file_size(dir / "model.safetensors"));
  double resident = 0.0, reported = 0.0, used = 0.0, peak = 0.0;
  dsv4::ModelLoadOptions options;
  options.repack_weights = state.range(0) != 0;
  for (auto _ : state) {
    dsv4::bench::reset_peak_rss();
    const size_t before = rss_bytes();
    auto model = dsv4::Model::load(dir.string(), options);
    peak = double(dsv4::bench::proc_status_bytes("VmHWM") - before);
    if (!model) {
      state.SkipWithError(model.status().to_string().c_str());
      break;
    }
    resident = double(rss_bytes() - before);
    reported = double(model.value()->resident_bytes());
    // Mapped pages come in on first use (FP4 codes need no scan at load): a prefill that routes
    // tokens to every expert shows the resident size once all weights have been read.
    state.PauseTiming();
    auto session = dsv4::Session::create(model.value()).value();
    std::vector<int32_t> prompt(512);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7919) % 16384);
    dsv4::AppendOptions none;
    none.output = dsv4::OutputMode::kNone;
    if (!session->append(prompt, none, nullptr)) state.SkipWithError("prefill failed");
    used = double(rss_bytes() - before) - double(session->memory().total_reserved());
    state.ResumeTiming();
  }
  state.counters["rss_after_prefill_over_file"] = used / file_bytes;
  state.counters["file_GB"] = file_bytes / 1e9;
  state.counters["rss_growth_GB"] = resident / 1e9;
  state.counters["rss_over_file"] = resident / file_bytes;
  state.counters["peak_rss_during_load_over_file"] = peak / file_bytes;
  state.counters["resident_bytes_over_file"] = reported / file_bytes;
  std::filesystem::remove_all(dir);
}

}  // namespace

BENCHMARK(bench_load_quantised)
    ->ArgName("repack")
    ->Arg(1)
    ->Arg(0)
    ->Iterations(1)
    ->Unit(benchmark::kSecond);
BENCHMARK_MAIN();
