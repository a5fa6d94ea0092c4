// Encode throughput of the V4 tokenizer on the mixed corpus of tokenizer/make_corpus.py, the
// same documents and files that tokenizer/bench_tokenizer.mjs gives @huggingface/tokenizers
// (tokenizer/run.sh runs both and prints them side by side). Added tokens are matched, as the
// reference encode does. Environment: DSV4_TOKENIZER_CORPUS (default
// build-bench/tokenizer_corpus.jsonl), DSV4_TOKENIZER_DIR (default: the one configured).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dsv4/text/tokenizer.hpp"

namespace {

struct Corpus {
  std::vector<std::string> docs;
  size_t bytes = 0;
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus out;
    const char* env = std::getenv("DSV4_TOKENIZER_CORPUS");
    std::ifstream in(env ? env : "build-bench/tokenizer_corpus.jsonl");
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      out.docs.push_back(nlohmann::json::parse(line).get<std::string>());
      out.bytes += out.docs.back().size();
    }
    return out;
  }();
  return c;
}

std::shared_ptr<const dsv4::text::Tokenizer> tokenizer() {
  static const auto tok = [] {
    const char* env = std::getenv("DSV4_TOKENIZER_DIR");
    return dsv4::text::Tokenizer::load(env ? env : DSV4_BENCH_TOKENIZER_DIR).value();
  }();
  return tok;
}

void bench_encode(benchmark::State& state) {
  const Corpus& c = corpus();
  if (c.docs.empty()) {
    state.SkipWithError("no corpus: run benchmarks/tokenizer/make_corpus.py (see run.sh)");
    return;
  }
  const auto tok = tokenizer();
  size_t tokens = 0;
  for (auto _ : state) {
    tokens = 0;
    for (const std::string& d : c.docs)
      tokens += tok->encode(d, {.match_added_tokens = true}).value().size();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(c.bytes));
  state.counters["tokens"] = double(tokens);
  state.counters["MB"] = double(c.bytes) / 1e6;
}

}  // namespace

BENCHMARK(bench_encode)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bench_encode)->Unit(benchmark::kMillisecond)->UseRealTime()->Threads(2);
BENCHMARK_MAIN();
