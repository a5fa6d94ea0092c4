// Decode and prefill throughput of the embedded V4-shaped model on the CPU backend.
//
// Decode is memory-bound: each token reads the weights it uses (attention, compressors, indexer,
// router, shared expert, its k routed experts, the head) plus its visible KV entries. The benchmark
// counts those bytes and reports the achieved bandwidth as a ratio to the streaming-read roofline
// measured in the same run.
#include <benchmark/benchmark.h>

#include <random>

#include "dsv4/bench/roofline.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"

namespace {

size_t linear_bytes(const dsv4::Linear& l) { return l.bytes(); }

// Weight bytes one decode token reads (k of the routed experts per layer).
double decode_weight_bytes(const dsv4::ModelConfig& c, const dsv4::ModelWeights& w) {
  double bytes = double(linear_bytes(w.head)) + double(c.hidden_size) * sizeof(float);
  for (const auto& L : w.layers) {
    for (const dsv4::Linear* l : {&L.wq_a, &L.wq_b, &L.wkv, &L.wo_a, &L.wo_b, &L.gate})
      bytes += double(linear_bytes(*l));
    bytes += double((L.hc_attn.fn.size() + L.hc_ffn.fn.size()) * sizeof(float));
    if (L.compressor)
      bytes += double(linear_bytes(L.compressor->wkv) + linear_bytes(L.compressor->wgate));
    if (L.indexer)
      bytes += double(linear_bytes(L.indexer->wq_b) + linear_bytes(L.indexer->weights_proj) +
                      linear_bytes(L.indexer->compressor.wkv) +
                      linear_bytes(L.indexer->compressor.wgate));
    if (L.shared_expert) bytes += 3.0 * double(linear_bytes(L.shared_expert->w1));
    bytes += double(c.num_experts_per_tok) * 3.0 * double(linear_bytes(L.experts[0].w1));
  }
  return bytes;
}

// KV bytes one decode token reads at context T: window + (HCA: all entries; CSA: indexer keys +
// top-k).
double decode_kv_bytes(const dsv4::ModelConfig& c, int64_t T) {
  double entries = 0.0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const int64_t m = c.compress_ratio(l);
    entries += double(std::min(T, c.sliding_window)) * double(c.head_dim);
    if (m == 4)
      entries += double(T / m) * double(c.index_head_dim) +
                 double(std::min(T / m, c.index_topk)) * double(c.head_dim);
    else if (m > 0)
      entries += double(T / m) * double(c.head_dim);
  }
  return entries * sizeof(float);
}

std::shared_ptr<const dsv4::Model> demo_model() {
  static auto model = [] {
    const auto config = dsv4::demo_model_config(12);
    return dsv4::Model::from_weights(config, dsv4::random_weights(config, 2026)).value();
  }();
  return model;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = dist(rng);
  return t;
}

void bench_decode(benchmark::State& state) {
  auto model = demo_model();
  const auto& c = model->config();
  const int64_t context = state.range(0);
  auto session = dsv4::Session::create(model).value();
  const auto prompt = random_tokens(context, c.vocab_size);
  if (!session->append(prompt, nullptr)) state.SkipWithError("prefill failed");
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  int32_t token = 1;
  for (auto _ : state) {
    if (!session->append({&token, 1}, logits.data())) state.SkipWithError("decode failed");
    token = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const double bytes = decode_weight_bytes(c, model->weights()) + decode_kv_bytes(c, context);
  state.counters["tokens/s"] =
      benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["roofline_GB/s"] = dsv4::bench::measure_read_bandwidth() / 1e9;
}

void bench_prefill(benchmark::State& state) {
  auto model = demo_model();
  const int64_t n = state.range(0);
  const auto prompt = random_tokens(n, model->config().vocab_size);
  for (auto _ : state) {
    auto session = dsv4::Session::create(model).value();
    if (!session->append(prompt, nullptr)) state.SkipWithError("prefill failed");
  }
  state.counters["tokens/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

// Compare GB/s with roofline_GB/s: the ratio is how close decode runs to the memory limit.
BENCHMARK(bench_decode)->Arg(1024)->Arg(8192)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(bench_prefill)->Arg(2048)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK_MAIN();
