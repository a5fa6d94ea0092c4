// dsv4 demo: the main job on the embedded default. A V4-shaped model with seeded random weights
// reads a long prompt, decodes a few tokens, and reports the KV cache by kind against a dense cache
// of the same model, plus prefill and decode throughput.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "cli.hpp"
#include "dsv4/backend/registry.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/text/chat.hpp"
#include "text_generation.hpp"

namespace dsv4::cli {
namespace {

// The option's integer value, `fallback` when absent, -1 when not a whole integer.
int64_t int_option(const Args& args, const char* key, int64_t fallback) {
  if (!args.has(key)) return fallback;
  int64_t value = 0;
  return parse_int(args.get(key), &value) ? value : -1;
}

void print_cache_table(const ModelConfig& c, const CacheMemory& mem, int64_t n_tokens,
                       KvFormat format) {
  std::printf("\nKV cache after %lld tokens (%s storage)\n", static_cast<long long>(n_tokens),
              std::string(kv_format_name(format)).c_str());
  std::printf("  %-12s %14s %14s\n", "kind", "bytes", "bytes/token");
  for (int k = 0; k < kNumCacheKinds; ++k) {
    const size_t bytes = mem.total_used(CacheKind(k));
    std::printf("  %-12s %14zu %14.1f\n", std::string(cache_kind_name(CacheKind(k))).c_str(), bytes,
                double(bytes) / double(n_tokens));
  }
  const size_t total = mem.total_used();
  // A dense cache keeps one d-wide key per token in every layer.
  const double dense =
      double(n_tokens) * double(c.head_dim) * double(c.num_hidden_layers) * sizeof(float);
  std::printf("  %-12s %14zu %14.1f\n", "total", total, double(total) / double(n_tokens));
  std::printf("  %-12s %14.0f %14.1f   (every token, every layer, d = %lld)\n", "dense", dense,
              dense / double(n_tokens), static_cast<long long>(c.head_dim));
  std::printf("  compressed cache / dense cache = %.3f (%.1fx smaller)\n", double(total) / dense,
              dense / double(total));
  std::printf("\nper layer\n  %5s  %-4s  %12s  %12s  %12s  %10s\n", "layer", "attn", "window",
              "compressed", "indexer", "state");
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const auto& b = mem.bytes_used[size_t(l)];
    std::printf("  %5lld  %-4s  %12zu  %12zu  %12zu  %10zu\n", static_cast<long long>(l),
                std::string(attention_kind_name(c.attention_kind(l))).c_str(), b[0], b[1], b[2],
                b[3]);
  }
}

}  // namespace

namespace {

// `dsv4 demo --text`: the whole text path on the embedded model — chat prompt, tokenizer,
// prefill, sampling, streaming decode. The weights are random, so the reply is random text.
int demo_text(const Args& args) {
  const int64_t n_decode = int_option(args, "decode", 24);
  if (n_decode < 1) {
    std::fprintf(stderr, "dsv4 demo --text: --decode >= 1\n");
    return 2;
  }
  Args model_args = args;
  model_args.options["preset"] = "demo";
  auto tm = load_text_model(model_args);
  if (!tm) {
    std::fprintf(stderr, "dsv4 demo: %s\n", tm.status().to_string().c_str());
    return 1;
  }
  auto params = sampler_params_from_args(args, *tm->tokenizer, 0.7f);
  if (!params) {
    std::fprintf(stderr, "dsv4 demo: %s\n", params.status().to_string().c_str());
    return 1;
  }
  auto sampler = sampling::Sampler::create(params.value()).value();
  auto session_options = session_options_from_args(args);
  if (!session_options) {
    std::fprintf(stderr, "dsv4 demo: %s\n", session_options.status().to_string().c_str());
    return 2;
  }
  auto created = Session::create(tm->model, session_options.value());
  if (!created) {
    std::fprintf(stderr, "dsv4 demo: %s\n", created.status().to_string().c_str());
    return 2;
  }
  auto session = std::move(created.value());
  const std::string messages =
      R"([{"role":"user","content":"What makes the DeepSeek-V4 KV cache small?"}])";
  const auto prompt = text::render_chat(messages, text::ChatOptions{}).value();
  const auto ids = text::tokenize_prompt(*tm->tokenizer, prompt).value();
  std::printf("dsv4 demo --text: %s\nprompt (%zu tokens): %s\nreply: ", tm->description.c_str(),
              ids.size(), prompt.text.c_str());
  std::fflush(stdout);
  auto turn = generate_turn(*session, tm->tokenizer, *sampler, ids, n_decode, stdout);
  std::printf("\n");
  if (!turn) {
    std::fprintf(stderr, "dsv4 demo: %s\n", turn.status().to_string().c_str());
    return 1;
  }
  print_turn_stats(turn.value(), stdout);
  return 0;
}

}  // namespace

int command_demo(const Args& args) {
  if (args.has("text")) return demo_text(args);
  const int64_t n_prompt = int_option(args, "tokens", 32768);
  const int64_t n_decode = int_option(args, "decode", 8);
  const int64_t n_layers = int_option(args, "layers", 12);
  const int64_t threads = int_option(args, "threads", 0);
  if (n_prompt < 1 || n_decode < 0 || n_layers < 3 || threads < 0) {
    std::fprintf(stderr,
                 "dsv4 demo: --tokens >= 1, --decode >= 0, --layers >= 3, --threads >= 0\n");
    return 2;
  }
  const ModelConfig config = demo_model_config(n_layers);
  if (Status s = validate_model_config(config); !s) {
    std::fprintf(stderr, "dsv4 demo: %s\n", s.to_string().c_str());
    return 1;
  }
  const auto t_build = Clock::now();
  ModelLoadOptions options;
  options.n_threads = int(threads);
  if (Status s = load_options_from_args(args, &options); !s) {
    std::fprintf(stderr, "dsv4 demo: %s\n", s.to_string().c_str());
    return 2;
  }
  auto model = random_official_model(config, options);
  if (!model) {
    std::fprintf(stderr, "dsv4 demo: %s\n", model.status().to_string().c_str());
    return 1;
  }
  std::printf(
      "dsv4 demo: embedded V4-shaped model (random FP8/FP4/BF16 weights, seed 2026, %.1f MB "
      "resident), built in %.2f s\n",
      double(model.value()->resident_bytes()) / 1e6, seconds_since(t_build));
  std::printf("  %lld layers [", static_cast<long long>(n_layers));
  for (int64_t l = 0; l < n_layers; ++l)
    std::printf("%s%s", l ? " " : "",
                std::string(attention_kind_name(config.attention_kind(l))).c_str());
  std::printf(
      "], D=%lld, %lld heads x %lld, window %lld, top-%lld of 1/4, 1/128\n",
      static_cast<long long>(config.hidden_size),
      static_cast<long long>(config.num_attention_heads), static_cast<long long>(config.head_dim),
      static_cast<long long>(config.sliding_window), static_cast<long long>(config.index_topk));
  std::printf("  %lld experts (top-%lld) + shared, %lld mHC streams; cpu kernels: %s, %d threads\n",
              static_cast<long long>(config.n_routed_experts),
              static_cast<long long>(config.num_experts_per_tok),
              static_cast<long long>(config.hc_mult), std::string(cpu::active_isa()).c_str(),
              threads > 0 ? int(threads) : omp_get_max_threads());

  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token_dist(0, int32_t(config.vocab_size - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
  for (auto& t : prompt) t = token_dist(rng);

  auto session_options = session_options_from_args(args);
  if (!session_options) {
    std::fprintf(stderr, "dsv4 demo: %s\n", session_options.status().to_string().c_str());
    return 2;
  }
  auto session = Session::create(model.value(), session_options.value());
  if (!session) {
    std::fprintf(stderr, "dsv4 demo: %s\n", session.status().to_string().c_str());
    return 2;
  }
  std::vector<float> logits(static_cast<size_t>(config.vocab_size));
  const auto t_prefill = Clock::now();
  // Only the last position's logits are needed to start decoding.
  if (Status s = session.value()->append({prompt.data(), prompt.size() - 1}, nullptr); !s) {
    std::fprintf(stderr, "dsv4 demo: %s\n", s.to_string().c_str());
    return 1;
  }
  if (Status s = session.value()->append({&prompt.back(), 1}, logits.data()); !s) {
    std::fprintf(stderr, "dsv4 demo: %s\n", s.to_string().c_str());
    return 1;
  }
  const double prefill_seconds = seconds_since(t_prefill);

  std::vector<int32_t> generated;
  const auto t_decode = Clock::now();
  for (int64_t i = 0; i < n_decode; ++i) {
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    generated.push_back(next);
    if (Status s = session.value()->append({&next, 1}, logits.data()); !s) {
      std::fprintf(stderr, "dsv4 demo: %s\n", s.to_string().c_str());
      return 1;
    }
  }
  const double decode_seconds = seconds_since(t_decode);

  std::printf("\nprefill: %lld tokens in %.2f s = %.0f tokens/s\n",
              static_cast<long long>(n_prompt), prefill_seconds,
              double(n_prompt) / prefill_seconds);
  if (n_decode > 0) {
    std::printf("decode:  %lld tokens in %.3f s = %.1f tokens/s (at context %lld)\n",
                static_cast<long long>(n_decode), decode_seconds, double(n_decode) / decode_seconds,
                static_cast<long long>(n_prompt));
    std::printf("greedy tokens:");
    for (int32_t t : generated) std::printf(" %d", t);
    std::printf("\n");
  }
  print_cache_table(config, session.value()->memory(), session.value()->position(),
                    session.value()->kv_format());
  return 0;
}

}  // namespace dsv4::cli
