// Configurations no golden file covers: other widths, head counts, windows, top-k, expert counts,
// hash-layer counts, scoring functions, stream counts and layer patterns. The library is checked
// against the naive reference of reference_model.hpp in all three forward modes, and the cache's
// memory accounting against the per-token formula of spec section 8.
#include <catch2/catch.hpp>
#include <random>

#include "dsv4/model/session.hpp"
#include "reference_model.hpp"

namespace {

dsv4::ModelConfig base_config() {
  dsv4::ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 48;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 2;
  c.head_dim = 24;
  c.qk_rope_head_dim = 8;
  c.q_lora_rank = 16;
  c.o_groups = 1;
  c.o_lora_rank = 12;
  c.sliding_window = 5;
  c.compress_ratios = {4, 0, 8, 4};
  c.index_n_heads = 3;
  c.index_head_dim = 12;
  c.index_topk = 3;
  c.n_routed_experts = 6;
  c.num_experts_per_tok = 3;
  c.n_shared_experts = 0;
  c.moe_intermediate_size = 20;
  c.num_hash_layers = 2;
  c.scoring_func = dsv4::ScoringFunc::kSigmoid;
  c.routed_scaling_factor = 2.0;
  c.swiglu_limit = 0.0;
  c.hc_mult = 2;
  c.hc_sinkhorn_iters = 5;
  c.has_rope_scaling = true;
  c.rope_scaling = {"yarn", 4.0, 4096, 32.0, 1.0};
  return c;
}

struct Variant {
  const char* name;
  dsv4::ModelConfig config;
};

std::vector<Variant> variants() {
  std::vector<Variant> out;
  out.push_back({"sigmoid, 2 streams, no shared expert, 2 hash layers", base_config()});
  dsv4::ModelConfig b = base_config();
  b.hidden_size = 64, b.num_attention_heads = 6, b.head_dim = 32, b.qk_rope_head_dim = 16,
  b.o_groups = 3;
  b.o_lora_rank = 8, b.sliding_window = 9, b.num_hidden_layers = 5,
  b.compress_ratios = {0, 4, 16, 4, 0, 128};
  b.index_topk = 5, b.index_n_heads = 2, b.index_head_dim = 16, b.n_routed_experts = 4,
  b.num_experts_per_tok = 1;
  b.n_shared_experts = 2, b.num_hash_layers = 0, b.scoring_func = dsv4::ScoringFunc::kSoftmax,
  b.hc_mult = 3;
  b.has_rope_scaling = false, b.swiglu_limit = 1.5, b.hc_sinkhorn_iters = 20;
  out.push_back({"softmax, 3 streams, 6 heads in 3 groups, 2 shared experts, no YaRN", b});
  dsv4::ModelConfig c = base_config();
  c.num_hidden_layers = 2, c.compress_ratios = {4, 4}, c.hc_mult = 1, c.sliding_window = 1,
  c.index_topk = 1;
  c.num_hash_layers = 1, c.scoring_func = dsv4::ScoringFunc::kSqrtSoftplus, c.n_shared_experts = 1;
  c.vocab_size = 97, c.num_experts_per_tok = 2;
  out.push_back({"sqrtsoftplus, 1 stream, window 1, top-1, all CSA", c});
  return out;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = dist(rng);
  return t;
}

}  // namespace

TEST_CASE("unseen configurations: prefill, chunked prefill and decode match the naive reference",
          "[model][configs]") {
  for (const Variant& v : variants()) {
    INFO(v.name);
    REQUIRE(dsv4::validate_model_config(v.config).is_ok());
    const dsv4::ModelWeights weights = dsv4::random_weights(v.config, 99);
    const int64_t T = 61, V = v.config.vocab_size;
    const auto tokens = random_tokens(T, V, 5);
    const auto reference = dsv4::test::ReferenceModel(v.config, weights).forward(tokens);
    auto model = dsv4::Model::from_weights(v.config, weights).value();

    double scale = 0.0;
    for (const auto& row : reference)
      for (double x : row) scale = std::max(scale, std::fabs(x));
    const double tolerance = 1e-4 * std::max(1.0, scale);

    for (int64_t chunk : {T, int64_t(1), int64_t(7)}) {
      auto session = dsv4::Session::create(model).value();
      std::vector<float> logits(size_t(T * V));
      for (int64_t begin = 0; begin < T; begin += chunk) {
        const int64_t n = std::min(chunk, T - begin);
        REQUIRE(
            session->append({tokens.data() + begin, size_t(n)}, logits.data() + begin * V).is_ok());
      }
      double worst = 0.0;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < V; ++i) {
          const double got = logits[size_t(t * V + i)];
          // A NaN or infinity is an infinite difference: it can never pass the bound.
          const double diff = std::isfinite(got) ? std::fabs(got - reference[t][i]) : INFINITY;
          worst = std::max(worst, diff);
        }
      INFO("chunk " << chunk << ": max |diff| " << worst << " (logit scale " << scale << ")");
      CHECK(worst < tolerance);
      CHECK(worst < 2e-5 * std::max(1.0, scale));  // regression bound: about 2e-6 today
    }
  }
}

TEST_CASE("memory accounting matches the per-token formula of the spec", "[model][memory]") {
  const dsv4::ModelConfig c = base_config();
  auto model = dsv4::Model::from_weights(c, dsv4::random_weights(c, 3)).value();
  auto session = dsv4::Session::create(model).value();
  const auto tokens = random_tokens(70, c.vocab_size, 9);
  int64_t T = 0;
  for (int64_t step : {1, 2, 3, 10, 21, 33}) {
    REQUIRE(session->append({tokens.data() + T, size_t(step)}, nullptr).is_ok());
    T += step;
    const dsv4::CacheMemory mem = session->memory();
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      INFO("T = " << T << ", layer " << l);
      const int64_t m = c.compress_ratio(l), d = c.head_dim, ci = c.index_head_dim;
      const auto& b = mem.bytes_used[size_t(l)];
      CHECK(b[size_t(dsv4::CacheKind::kWindow)] == size_t(std::min(T, c.sliding_window) * d * 4));
      CHECK(b[size_t(dsv4::CacheKind::kCompressed)] == size_t(m > 0 ? T / m * d * 4 : 0));
      CHECK(b[size_t(dsv4::CacheKind::kIndexer)] == size_t(m == 4 ? T / m * ci * 4 : 0));
      // State: the incomplete window's kv and gate rows (m x width each), plus CSA's previous A
      // halves (m x width/2 each), for the attention compressor and, in CSA layers, the indexer's.
      size_t state = 0;
      if (m == 4)
        state = (m * 2 * d * 2 + m * d * 2 + m * 2 * ci * 2 + m * ci * 2) * 4;
      else if (m > 0)
        state = size_t(m * d * 2 * 4);
      CHECK(b[size_t(dsv4::CacheKind::kCompressorState)] == state);
      CHECK(mem.bytes_reserved[size_t(l)][0] >= b[0]);
    }
  }
  session->reset();
  CHECK(session->memory().total_used(dsv4::CacheKind::kWindow) == 0);
  CHECK(session->position() == 0);
}

TEST_CASE("sessions reject bad tokens without changing state", "[model][errors]") {
  const dsv4::ModelConfig c = base_config();
  auto model = dsv4::Model::from_weights(c, dsv4::random_weights(c, 3)).value();
  auto session = dsv4::Session::create(model).value();
  const std::vector<int32_t> good = {1, 2, 3}, bad = {1, 50, 3}, negative = {-7};
  REQUIRE(session->append(good, nullptr).is_ok());
  const auto before = session->memory().total_used();
  auto status = session->append(bad, nullptr);
  CHECK(status.code() == dsv4::StatusCode::kOutOfRange);
  CHECK(status.message().find("token 1 has id 50") != std::string::npos);
  CHECK(session->append(negative, nullptr).code() == dsv4::StatusCode::kOutOfRange);
  CHECK(session->position() == 3);
  CHECK(session->memory().total_used() == before);
  CHECK(dsv4::Session::create(nullptr).status().code() == dsv4::StatusCode::kInvalidArgument);
  dsv4::SessionOptions options;
  options.max_chunk = 0;
  CHECK(dsv4::Session::create(model, options).status().code() ==
        dsv4::StatusCode::kInvalidArgument);
}
