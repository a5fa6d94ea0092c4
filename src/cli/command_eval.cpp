// dsv4 eval: teacher-forced prefill + decode, logits to a safetensors file, NLL and throughput.
// dsv4 generate: greedy or seeded sampling (dsv4::sampling::Sampler) from a prompt of token ids.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "cli.hpp"
#include "dsv4/bench/memory_probe.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/sampling/sampler.hpp"
#include "token_file.hpp"

namespace dsv4::cli {
namespace {

// −log softmax(logits)[target], computed in double.
double negative_log_likelihood(const float* logits, int64_t vocab, int32_t target) {
  double max_logit = logits[0];
  for (int64_t i = 1; i < vocab; ++i) max_logit = std::max(max_logit, double(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - max_logit);
  return std::log(sum) + max_logit - double(logits[target]);
}

struct Loaded {
  std::shared_ptr<const Model> model;
  std::vector<int32_t> tokens;
};

Result<Loaded> load_inputs(const Args& args) {
  if (args.get("model").empty())
    return Status(StatusCode::kInvalidArgument, "--model DIR is required");
  if (args.get("tokens").empty())
    return Status(StatusCode::kInvalidArgument, "--tokens FILE is required");
  auto tokens = read_token_file(args.get("tokens"));
  if (!tokens) return tokens.status();
  ModelLoadOptions options;
  int64_t threads = 0;
  if (args.has("threads") && (!parse_int(args.get("threads"), &threads) || threads < 0))
    return Status(StatusCode::kInvalidArgument, "--threads must be a non-negative integer");
  options.n_threads = int(threads);
  if (Status s = load_options_from_args(args, &options); !s) return s;
  auto model = Model::load(args.get("model"), options);
  if (!model) return model.status();
  return Loaded{model.value(), std::move(tokens.value())};
}

void print_memory(const Model& model, const Session& session,
                  const bench::WorkingMemoryProbe& probe) {
  const CacheMemory cache = session.memory();
  std::printf("memory: weights %.1f MB resident, KV cache %.1f MB, peak working %.1f MB\n",
              double(model.resident_bytes()) / 1e6, double(cache.total_reserved()) / 1e6,
              double(probe.peak_working(cache.total_reserved())) / 1e6);
}

std::span<const std::byte> as_bytes(const std::vector<float>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(float)};
}

// --swa full | none | checkpoint:N (how --save keeps the sliding-window entries).
Result<SaveOptions> save_options_from_args(const Args& args) {
  SaveOptions options;
  if (!args.has("swa")) return options;
  const std::string value = args.get("swa");
  int64_t interval = 0;
  if (value == "full") {
    options.swa_strategy = SwaStrategy::kFull;
  } else if (value == "none") {
    options.swa_strategy = SwaStrategy::kNone;
  } else if (value.rfind("checkpoint:", 0) == 0 && parse_int(value.substr(11), &interval) &&
             interval > 0) {
    options.swa_strategy = SwaStrategy::kCheckpoint;
    options.checkpoint_interval = interval;
  } else {
    return Status(StatusCode::kInvalidArgument,
                  "--swa must be full, none or checkpoint:N with N > 0, not '" + value + "'");
  }
  return options;
}

}  // namespace

int command_eval(const Args& args) {
  auto inputs = load_inputs(args);
  if (!inputs) return report(inputs.status(), "eval");
  const std::vector<int32_t>& tokens = inputs->tokens;
  const int64_t n = int64_t(tokens.size()), vocab = inputs->model->config().vocab_size;
  int64_t prompt_len = 0;
  if (!parse_int(args.get("prompt-len"), &prompt_len) || prompt_len < 1 || prompt_len > n)
    return report(Status(StatusCode::kInvalidArgument,
                         "--prompt-len must be in [1, " + std::to_string(n) + "]"),
                  "eval");
  if (args.get("out").empty())
    return report(Status(StatusCode::kInvalidArgument, "--out FILE is required"), "eval");

  auto session_options = session_options_from_args(args);
  if (!session_options) return report(session_options.status(), "eval");
  // --resume FILE: continue a saved session whose tokens the token file starts with; the prefill
  // then covers only the prompt tokens after it (prefill_logits has those rows).
  auto session = args.has("resume")
                     ? Session::load(inputs->model, args.get("resume"), session_options.value())
                     : Session::create(inputs->model, session_options.value());
  if (!session) return report(session.status(), "eval");
  const int64_t resumed = session.value()->position();
  if (resumed > prompt_len || !std::equal(session.value()->tokens().begin(),
                                          session.value()->tokens().end(), tokens.begin()))
    return report(Status(StatusCode::kInvalidArgument,
                         "the token file does not continue the saved session (its " +
                             std::to_string(resumed) +
                             " tokens must be the first of the file and within --prompt-len)"),
                  "eval");
  std::vector<float> prefill(size_t((prompt_len - resumed) * vocab)),
      decode(size_t((n - prompt_len) * vocab));
  std::fill(prefill.begin(), prefill.end(), 0.0f);  // resident before the probe starts
  std::fill(decode.begin(), decode.end(), 0.0f);
  const bench::WorkingMemoryProbe probe;
  const auto t0 = Clock::now();
  if (Status s = session.value()->append({tokens.data() + resumed, size_t(prompt_len - resumed)},
                                         prefill.data());
      !s)
    return report(s, "eval");
  const double prefill_seconds = seconds_since(t0);
  const auto t1 = Clock::now();
  for (int64_t i = prompt_len; i < n; ++i) {
    if (Status s = session.value()->append({&tokens[size_t(i)], 1},
                                           decode.data() + (i - prompt_len) * vocab);
        !s)
      return report(s, "eval");
  }
  const double decode_seconds = seconds_since(t1);

  double nll = 0.0;
  for (int64_t i = resumed; i + 1 < n; ++i) {
    const float* row = i < prompt_len ? prefill.data() + (i - resumed) * vocab
                                      : decode.data() + (i - prompt_len) * vocab;
    nll += negative_log_likelihood(row, vocab, tokens[size_t(i + 1)]);
  }
  const Status written = write_safetensors(
      args.get("out"),
      {{"prefill_logits", DType::kF32, {prompt_len - resumed, vocab}, as_bytes(prefill)},
       {"decode_logits", DType::kF32, {n - prompt_len, vocab}, as_bytes(decode)}});
  if (!written) return report(written, "eval");
  if (args.has("save")) {
    auto save_options = save_options_from_args(args);
    if (!save_options) return report(save_options.status(), "eval");
    if (Status s = session.value()->save(args.get("save"), save_options.value()); !s)
      return report(s, "eval");
    std::printf("saved the session (%lld tokens) to %s\n", static_cast<long long>(n),
                args.get("save").c_str());
  }
  std::printf("tokens: %lld (prompt %lld, decode %lld", static_cast<long long>(n),
              static_cast<long long>(prompt_len), static_cast<long long>(n - prompt_len));
  if (resumed > 0) std::printf(", %lld resumed", static_cast<long long>(resumed));
  std::printf(")\n");
  if (n - resumed > 1)
    std::printf("mean NLL: %.6f nats/token (perplexity %.3f)\n", nll / double(n - resumed - 1),
                std::exp(nll / double(n - resumed - 1)));
  std::printf("prefill: %.1f tokens/s (%.3f s)\n",
              double(prompt_len - resumed) / std::max(prefill_seconds, 1e-9), prefill_seconds);
  if (n > prompt_len)
    std::printf("decode:  %.1f tokens/s (%.3f s)\n", double(n - prompt_len) / decode_seconds,
                decode_seconds);
  print_memory(*inputs->model, *session.value(), probe);
  std::printf("wrote %s\n", args.get("out").c_str());
  return 0;
}

int command_generate(const Args& args) {
  auto inputs = load_inputs(args);
  if (!inputs) return report(inputs.status(), "generate");
  int64_t n_new = 16, seed = 0, top_k = 0;
  if (args.has("n") && (!parse_int(args.get("n"), &n_new) || n_new < 0))
    return report(Status(StatusCode::kInvalidArgument, "-n must be a non-negative integer"),
                  "generate");
  if (args.has("seed") && !parse_int(args.get("seed"), &seed))
    return report(Status(StatusCode::kInvalidArgument, "--seed must be an integer"), "generate");
  if (args.has("top-k") && (!parse_int(args.get("top-k"), &top_k) || top_k < 0))
    return report(Status(StatusCode::kInvalidArgument, "--top-k must be a non-negative integer"),
                  "generate");
  double temperature = 0.0;
  if (args.has("temperature")) {
    try {
      temperature = std::stod(args.get("temperature"));
    } catch (...) {
      temperature = -1.0;
    }
    if (!(temperature >= 0.0))
      return report(Status(StatusCode::kInvalidArgument, "--temperature must be >= 0"), "generate");
  }
  const int64_t vocab = inputs->model->config().vocab_size;
  auto session_options = session_options_from_args(args);
  if (!session_options) return report(session_options.status(), "generate");
  auto session = Session::create(inputs->model, session_options.value());
  if (!session) return report(session.status(), "generate");
  const std::vector<int32_t>& prompt = inputs->tokens;
  std::vector<float> logits(prompt.size() * size_t(vocab));
  const bench::WorkingMemoryProbe probe;
  const auto t0 = Clock::now();
  if (Status s = session.value()->append(prompt, logits.data()); !s) return report(s, "generate");
  std::vector<float> last(logits.end() - vocab, logits.end());
  sampling::SamplerParams sp;
  sp.temperature = float(temperature);
  sp.top_k = int32_t(top_k);
  sp.seed = uint64_t(seed);
  auto sampler = sampling::Sampler::create(sp);
  if (!sampler) return report(sampler.status(), "generate");
  std::vector<int32_t> generated;
  const auto t1 = Clock::now();
  for (int64_t step = 0; step < n_new; ++step) {
    auto sampled = sampler.value()->sample(last);
    if (!sampled) return report(sampled.status(), "generate");
    const int32_t next = sampled.value();
    sampler.value()->accept(next);
    generated.push_back(next);
    std::printf("%d%s", next, step + 1 == n_new ? "\n" : " ");
    std::fflush(stdout);
    if (Status s = session.value()->append({&next, 1}, last.data()); !s)
      return report(s, "generate");
  }
  std::fprintf(stderr, "prompt %zu tokens in %.3f s; %lld tokens generated at %.1f tokens/s\n",
               prompt.size(), std::chrono::duration<double>(t1 - t0).count(),
               static_cast<long long>(n_new), double(n_new) / std::max(seconds_since(t1), 1e-9));
  const CacheMemory cache = session.value()->memory();
  std::fprintf(
      stderr,
      "prefill %.1f tokens/s; memory: weights %.1f MB resident, KV cache %.1f MB, peak "
      "working %.1f MB\n",
      double(prompt.size()) / std::max(std::chrono::duration<double>(t1 - t0).count(), 1e-9),
      double(inputs->model->resident_bytes()) / 1e6, double(cache.total_reserved()) / 1e6,
      double(probe.peak_working(cache.total_reserved())) / 1e6);
  return 0;
}

}  // namespace dsv4::cli
