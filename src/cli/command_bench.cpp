// dsv4 bench: prefill and decode of a model (a checkpoint, or a preset with random weights in the
// official formats) at several context lengths, each figure against its roofline measured in the
// same run: decode as bytes read per token ÷ streaming bandwidth, prefill as linear FLOPs ÷ the
// fp32 FMA peak.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "cli.hpp"
#include "dsv4/backend/registry.hpp"
#include "dsv4/bench/memory_probe.hpp"
#include "dsv4/bench/roofline.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/model/traffic.hpp"

namespace dsv4::cli {
namespace {

// The disk tier over the timed steps: where the cache is, and what moved per step.
void print_tier(const CacheTierStats& before, const CacheTierStats& after, int64_t steps) {
  const auto per_step = [steps](uint64_t a, uint64_t b) { return double(b - a) / double(steps); };
  const uint64_t reads =
      after.block_hits + after.block_misses - before.block_hits - before.block_misses;
  std::printf(
      "            disk tier: %.1f MB in RAM, %.1f MB on disk (file %.1f MB); per step %.0f "
      "blocks read back (%.2f MB), %.0f written; block hit rate %.1f%%\n",
      double(after.ram_bytes) / 1e6, double(after.disk_bytes) / 1e6, double(after.file_bytes) / 1e6,
      per_step(before.traffic.blocks_read, after.traffic.blocks_read),
      per_step(before.traffic.raw_bytes_read, after.traffic.raw_bytes_read) / 1e6,
      per_step(before.traffic.blocks_written, after.traffic.blocks_written),
      reads > 0 ? 100.0 * double(after.block_hits - before.block_hits) / double(reads) : 100.0);
}

bool parse_contexts(const std::string& text, std::vector<int64_t>* out) {
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int64_t v = 0;
    if (!parse_int(item, &v) || v < 0) return false;
    out->push_back(v);
  }
  return !out->empty();
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = dist(rng);
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

Result<std::shared_ptr<const Model>> bench_model(const Args& args, const ModelLoadOptions& options,
                                                 std::string* what) {
  if (args.has("model")) {
    *what = args.get("model");
    return Model::load(args.get("model"), options);
  }
  const std::string preset = args.get("preset", "v4-flash-slice");
  ModelConfig config;
  if (!preset_config(preset, &config) || preset == "v4-flash" || preset == "v4-pro")
    return Status(StatusCode::kInvalidArgument,
                  "--preset must be v4-flash-slice or demo (the full models do not fit here; "
                  "load a checkpoint with --model)");
  *what = preset + " (random weights: FP8 attention + shared expert, FP4 experts, BF16 rest)";
  return random_official_model(config, options);
}

// One batch of the batched-decode benchmark: B sessions at one context, each with its own next
// token (its argmax: the routing differs between sessions, as it does between users).
struct DecodeBatch {
  std::vector<std::unique_ptr<Session>> sessions;
  std::vector<Session*> pointers;
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  std::vector<double> times;

  Status fill(const std::shared_ptr<const Model>& model, const SessionOptions& options,
              int64_t batch, int64_t context) {
    const int64_t vocab = model->config().vocab_size;
    for (int64_t i = 0; i < batch; ++i) {
      auto s = Session::create(model, options);
      if (!s) return s.status();
      if (Status f = s.value()->fill_synthetic_cache(context, uint64_t(7 + i)); !f) return f;
      pointers.push_back(s.value().get());
      sessions.push_back(std::move(s.value()));
      tokens.push_back(int32_t((i * 7919 + 1) % vocab));
    }
    logits.resize(size_t(batch * vocab));
    return Status::ok();
  }
  // One timed step (untimed when `warm_up`); the next tokens are each session's argmax.
  Status step(bool warm_up) {
    AppendOptions last;
    last.output = OutputMode::kLast;
    const auto t0 = Clock::now();
    if (Status s = Session::decode_batch(pointers, tokens, last, logits.data()); !s) return s;
    if (!warm_up) times.push_back(seconds_since(t0));
    const size_t vocab = logits.size() / tokens.size();
    for (size_t i = 0; i < tokens.size(); ++i) {
      const float* row = logits.data() + i * vocab;
      tokens[i] = int32_t(std::max_element(row, row + vocab) - row);
    }
    return Status::ok();
  }
};

// Batched decode (Session::decode_batch): for each context, one step of each batch size in
// turn, `steps` rounds, so that the machine's drift reaches every size alike (the ratios are what
// matters). Throughput is tokens per second over all sessions, compared with B = 1.
int bench_batched_decode(const std::shared_ptr<const Model>& model, const SessionOptions& options,
                         const std::vector<int64_t>& contexts, const std::vector<int64_t>& batches,
                         int64_t steps) {
  std::printf("\nbatched decode (median of %lld interleaved steps; one token per session)\n",
              static_cast<long long>(steps));
  std::printf("  %9s %6s %12s %18s %14s\n", "context", "batch", "ms/step", "tokens/s (all)",
              "vs batch 1");
  for (int64_t context : contexts) {
    std::vector<DecodeBatch> runs(batches.size());
    for (size_t b = 0; b < batches.size(); ++b)
      if (Status s = runs[b].fill(model, options, batches[b], context); !s)
        return report(s, "bench");
    for (int64_t step = 0; step < steps + 1; ++step)  // the first round warms up
      for (DecodeBatch& run : runs)
        if (Status s = run.step(step == 0); !s) return report(s, "bench");
    double single = 0.0;
    for (size_t b = 0; b < batches.size(); ++b) {
      const double seconds = median(runs[b].times);
      const double tokens_per_second = double(batches[b]) / seconds;
      if (batches[b] == 1) single = tokens_per_second;
      std::printf("  %9lld %6lld %12.2f %18.2f", static_cast<long long>(context),
                  static_cast<long long>(batches[b]), seconds * 1e3, tokens_per_second);
      if (single > 0) std::printf(" %13.2fx", tokens_per_second / single);
      std::printf("\n");
    }
  }
  return 0;
}

}  // namespace

int command_bench(const Args& args) {
  std::vector<int64_t> contexts;
  std::vector<int64_t> batches;
  int64_t steps = 0, prefill_tokens = 0, threads = 0;
  if (!parse_contexts(args.get("contexts", "1024,16384,65536"), &contexts) ||
      !parse_contexts(args.get("batch", "1"), &batches) ||
      std::any_of(batches.begin(), batches.end(), [](int64_t b) { return b < 1; }) ||
      !parse_int(args.get("steps", "8"), &steps) || steps < 1 ||
      !parse_int(args.get("prefill", "256"), &prefill_tokens) || prefill_tokens < 0 ||
      !parse_int(args.get("threads", "0"), &threads) || threads < 0) {
    std::fprintf(stderr,
                 "dsv4 bench: --contexts N,N,... (>= 0), --batch N,N,... (>= 1), --steps >= 1, "
                 "--prefill >= 0, --threads >= 0\n");
    return 2;
  }
  ModelLoadOptions options;
  options.n_threads = int(threads);
  if (Status s = load_options_from_args(args, &options); !s) {
    std::fprintf(stderr, "dsv4 bench: %s\n", s.to_string().c_str());
    return 2;
  }
  // The rooflines are measured with the thread count the model runs with.
  if (threads > 0) omp_set_num_threads(int(threads));
  const auto t_build = Clock::now();
  std::string what;
  auto loaded = bench_model(args, options, &what);
  if (!loaded) {
    std::fprintf(stderr, "dsv4 bench: %s\n", loaded.status().to_string().c_str());
    return 1;
  }
  const auto& model = loaded.value();
  const ModelConfig& c = model->config();
  std::printf("dsv4 bench: %s, ready in %.1f s\n", what.c_str(), seconds_since(t_build));
  std::printf("  resident weights %.3f GB; cpu kernels %s, %d threads\n",
              double(model->resident_bytes()) / 1e9, std::string(cpu::active_isa()).c_str(),
              threads > 0 ? int(threads) : omp_get_max_threads());
  const bench::ReadBandwidthMeter read_meter;
  const double fma_peak = bench::measure_fma_peak();
  std::printf("  rooflines measured now: streaming read %.1f GB/s, fp32 FMA %.0f GFLOP/s\n",
              read_meter.measure() / 1e9, fma_peak / 1e9);

  auto session_options = session_options_from_args(args);
  if (!session_options) {
    std::fprintf(stderr, "dsv4 bench: %s\n", session_options.status().to_string().c_str());
    return 2;
  }
  const SessionOptions session_opts = session_options.value();
  // A probe session: it reports the format the model actually stores (official: packed) and
  // refuses combinations the model cannot run before anything is timed.
  auto probe = Session::create(model, session_opts);
  if (!probe) {
    std::fprintf(stderr, "dsv4 bench: %s\n", probe.status().to_string().c_str());
    return 2;
  }
  std::printf("  numerics %s, kv cache format %s\n", model->official() ? "official" : "exact",
              std::string(kv_format_name(probe.value()->kv_format())).c_str());
  if (prefill_tokens > 0) {
    auto session = Session::create(model, session_opts).value();
    const auto prompt = random_tokens(prefill_tokens, c.vocab_size, 1);
    AppendOptions none;
    none.output = OutputMode::kNone;
    const auto t0 = Clock::now();
    if (Status s = session->append(prompt, none, nullptr); !s) {
      std::fprintf(stderr, "dsv4 bench: prefill: %s\n", s.to_string().c_str());
      return 1;
    }
    const double seconds = seconds_since(t0);
    const double tps = double(prefill_tokens) / seconds;
    const double flops = linear_flops_per_token(c, model->weights()) * tps;
    const double peak = std::max(fma_peak, bench::measure_fma_peak());  // before and after
    std::printf(
        "\nprefill %lld tokens: %.1f tokens/s, linear layers at %.1f GFLOP/s = %.0f%% of "
        "the FMA peak (%.0f GFLOP/s, measured before and after: the larger)\n",
        static_cast<long long>(prefill_tokens), tps, flops / 1e9,
        peak > 0 ? 100.0 * flops / peak : 0.0, peak / 1e9);
  }

  std::printf("\ndecode (median of %lld steps; cache filled synthetically to the context)\n",
              static_cast<long long>(steps));
  std::printf(
      "  (read GB/s: the streaming read measured right before and right after the steps,\n"
      "   the larger; roofline: GB/s against it)\n");
  std::printf("  %9s %11s %10s %12s %10s %10s %9s %10s %11s\n", "context", "ms/token", "tokens/s",
              "MB/token", "GB/s", "read GB/s", "roofline", "cache MB", "working MB");
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  double first_ms = 0.0;
  for (int64_t context : contexts) {
    auto session = Session::create(model, session_opts).value();
    if (Status s = session->fill_synthetic_cache(context, 7); !s) {
      std::fprintf(stderr, "dsv4 bench: %s\n", s.to_string().c_str());
      return 1;
    }
    AppendOptions last;
    last.output = OutputMode::kLast;
    const CacheTierStats tier_before = session->tier_stats();
    const bench::WorkingMemoryProbe probe;  // after the fill: the cache is part of the baseline
    std::vector<double> times;
    int32_t token = 1;
    const double read_before = read_meter.measure();
    for (int64_t i = 0; i < steps + 1; ++i) {  // the first step warms caches and scratch
      const auto t0 = Clock::now();
      if (Status s = session->append({&token, 1}, last, logits.data()); !s) {
        std::fprintf(stderr, "dsv4 bench: decode: %s\n", s.to_string().c_str());
        return 1;
      }
      if (i > 0) times.push_back(seconds_since(t0));
      token = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    const double bandwidth = std::max(read_before, read_meter.measure());
    const double seconds = median(times);
    const DecodeTraffic traffic =
        decode_traffic(c, model->weights(), context, session_opts.kv_format);
    const double achieved = traffic.total() / seconds;
    if (first_ms == 0.0) first_ms = seconds * 1e3;
    std::printf(
        "  %9lld %11.2f %10.2f %12.1f %10.2f %10.1f %8.0f%% %10.1f %11.1f   (%+.0f%% time vs "
        "the first)\n",
        static_cast<long long>(context), seconds * 1e3, 1.0 / seconds, traffic.total() / 1e6,
        achieved / 1e9, bandwidth / 1e9, 100.0 * achieved / bandwidth,
        double(session->memory().total_reserved()) / 1e6, double(probe.peak_working(0)) / 1e6,
        100.0 * (seconds * 1e3 / first_ms - 1.0));
    if (session_opts.ram_budget > 0) print_tier(tier_before, session->tier_stats(), steps + 1);
  }
  if (batches.size() > 1 || batches[0] > 1)
    return bench_batched_decode(model, session_opts, contexts, batches, steps);
  return 0;
}

}  // namespace dsv4::cli
