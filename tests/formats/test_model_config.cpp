#include <catch2/catch.hpp>
#include <sstream>

#include "dsv4/formats/model_config.hpp"
#include "test_support.hpp"

using dsv4::StatusCode;

TEST_CASE("config: the golden tiny-a config parses to the right values", "[config]") {
  auto parsed = dsv4::load_model_config(dsv4::test::golden_dir("tiny-a").string());
  REQUIRE(parsed.is_ok());
  const dsv4::ModelConfig& c = parsed.value();
  CHECK(c.vocab_size == 256);
  CHECK(c.hidden_size == 64);
  CHECK(c.num_hidden_layers == 6);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.head_dim == 32);
  CHECK(c.qk_rope_head_dim == 8);
  CHECK(c.q_lora_rank == 32);
  CHECK(c.o_groups == 2);
  CHECK(c.o_lora_rank == 16);
  CHECK(c.sliding_window == 16);
  CHECK(c.compress_ratios == std::vector<int64_t>{0, 4, 128, 4, 128, 0});
  CHECK(c.index_n_heads == 8);
  CHECK(c.index_head_dim == 16);
  CHECK(c.index_topk == 8);
  CHECK(c.n_routed_experts == 8);
  CHECK(c.num_experts_per_tok == 2);
  CHECK(c.n_shared_experts == 1);
  CHECK(c.moe_intermediate_size == 32);
  CHECK(c.num_hash_layers == 1);
  CHECK(c.scoring_func == dsv4::ScoringFunc::kSqrtSoftplus);
  CHECK(c.routed_scaling_factor == 1.5);
  CHECK(c.swiglu_limit == 2.0);
  CHECK(c.hc_mult == 4);
  CHECK(c.hc_sinkhorn_iters == 20);
  CHECK(c.hc_eps == 1e-6);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.compress_rope_theta == 160000.0);
  CHECK(c.has_rope_scaling);
  CHECK(c.rope_scaling.factor == 16.0);
  CHECK(c.rope_scaling.original_max_position_embeddings == 65536);
  CHECK(c.rope_scaling.beta_fast == 32.0);
  CHECK(c.rope_scaling.beta_slow == 1.0);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK_FALSE(c.quantization.present);
  CHECK(c.attention_kind(0) == dsv4::AttentionKind::kSlidingWindow);
  CHECK(c.attention_kind(1) == dsv4::AttentionKind::kCompressedSparse);
  CHECK(c.attention_kind(2) == dsv4::AttentionKind::kHeavilyCompressed);
  CHECK(c.is_hash_layer(0));
  CHECK_FALSE(c.is_hash_layer(1));
}

TEST_CASE("config: the quantised golden carries its quantization block", "[config]") {
  auto parsed = dsv4::load_model_config(dsv4::test::golden_dir("tiny-a-q").string());
  REQUIRE(parsed.is_ok());
  CHECK(parsed->quantization.present);
  CHECK(parsed->quantization.fmt == "e4m3");
  CHECK(parsed->quantization.scale_fmt == "ue8m0");
  CHECK(parsed->quantization.weight_block_out == 128);
  CHECK(parsed->expert_dtype == "fp4");
}

TEST_CASE("config: every file of the corrupt corpus gets its expected status",
          "[config][corrupt]") {
  std::istringstream in(dsv4::test::read_text(dsv4::test::source_dir() / "tests/corrupt/MANIFEST"));
  std::string file, status;
  int n = 0;
  while (in >> file >> status) {
    if (file.rfind("config/", 0) != 0) continue;
    ++n;
    const std::string text =
        dsv4::test::read_text(dsv4::test::source_dir() / "tests/corrupt" / file);
    auto parsed = dsv4::parse_model_config(text, file);
    INFO(file << " -> " << parsed.status().to_string());
    CHECK(dsv4::status_code_name(parsed.status().code()) == status);
    if (!parsed.is_ok()) CHECK(parsed.status().message().find(file) != std::string::npos);
  }
  CHECK(n >= 20);
}

TEST_CASE("config: messages name the offending key", "[config]") {
  auto parsed = dsv4::parse_model_config(dsv4::test::read_text(
      dsv4::test::source_dir() / "tests/corrupt/config/missing_hidden_size.json"));
  CHECK(parsed.status().message().find("hidden_size") != std::string::npos);
  parsed = dsv4::parse_model_config(dsv4::test::read_text(
      dsv4::test::source_dir() / "tests/corrupt/config/heads_not_divisible_by_groups.json"));
  CHECK(parsed.status().message().find("o_groups") != std::string::npos);
}

TEST_CASE("config: a missing config.json is an IO error", "[config]") {
  CHECK(dsv4::load_model_config("/nonexistent").status().code() == StatusCode::kIo);
}
