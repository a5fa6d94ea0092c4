// ABI freeze: struct layouts and enum values of the released v1 C API never change.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <vector>

#include "dsv4.h"

static_assert(offsetof(dsv4_model_params, struct_size) == 0);
static_assert(offsetof(dsv4_model_params, backend) == 8);
static_assert(offsetof(dsv4_model_params, n_threads) == 16);
static_assert(offsetof(dsv4_model_params, memory_limit) == 24);  // v2
static_assert(offsetof(dsv4_model_params, numerics) == 32);      // v3
static_assert(offsetof(dsv4_model_params, weights) == 40);       // v4 (0.6)
static_assert(sizeof(dsv4_model_params) == 48);
static_assert(DSV4_WEIGHTS_REPACKED == 0 && DSV4_WEIGHTS_STORED == 1);
static_assert(offsetof(dsv4_save_params, swa_strategy) == 8);
static_assert(offsetof(dsv4_save_params, checkpoint_interval) == 16);  // v0.5
static_assert(sizeof(dsv4_save_params) == 24);
static_assert(offsetof(dsv4_plan_params, ram_budget) == 24 && sizeof(dsv4_plan_params) == 32);
static_assert(offsetof(dsv4_plan_result, cache_disk_bytes) == 80 && sizeof(dsv4_plan_result) == 88);
static_assert(offsetof(dsv4_session_params, struct_size) == 0);
static_assert(offsetof(dsv4_session_params, max_positions) == 8);
static_assert(offsetof(dsv4_session_params, max_chunk) == 16);
static_assert(offsetof(dsv4_session_params, n_threads) == 24);   // v2
static_assert(offsetof(dsv4_session_params, kv_format) == 32);   // v3
static_assert(offsetof(dsv4_session_params, ram_budget) == 40);  // v4 (0.5)
static_assert(offsetof(dsv4_session_params, spill_dir) == 48);
static_assert(offsetof(dsv4_session_params, window_checkpoint_interval) == 56);
static_assert(offsetof(dsv4_session_params, lossy_cold_entries) == 64);
static_assert(sizeof(dsv4_session_params) == 72);
static_assert(DSV4_KV_F32 == 0 && DSV4_KV_BF16 == 1 && DSV4_KV_PACKED == 2);
static_assert(offsetof(dsv4_append_params, struct_size) == 0);
static_assert(offsetof(dsv4_append_params, output) == 8);
static_assert(offsetof(dsv4_append_params, abort_cb) == 16);
static_assert(offsetof(dsv4_append_params, abort_user) == 24);
static_assert(sizeof(dsv4_append_params) == 32);
// v3 (0.3): the text path.
static_assert(offsetof(dsv4_chat_params, struct_size) == 0);
static_assert(offsetof(dsv4_chat_params, thinking) == 8);
static_assert(offsetof(dsv4_chat_params, drop_thinking) == 12);
static_assert(offsetof(dsv4_chat_params, add_bos) == 16);
static_assert(offsetof(dsv4_chat_params, reasoning_effort) == 24);
static_assert(offsetof(dsv4_chat_params, variant) == 32);
static_assert(offsetof(dsv4_chat_params, context_json) == 40);
static_assert(sizeof(dsv4_chat_params) == 48);
static_assert(offsetof(dsv4_sampler_params, struct_size) == 0);
static_assert(offsetof(dsv4_sampler_params, temperature) == 8);
static_assert(offsetof(dsv4_sampler_params, top_k) == 12);
static_assert(offsetof(dsv4_sampler_params, top_p) == 16);
static_assert(offsetof(dsv4_sampler_params, min_p) == 20);
static_assert(offsetof(dsv4_sampler_params, repetition_penalty) == 24);
static_assert(offsetof(dsv4_sampler_params, presence_penalty) == 28);
static_assert(offsetof(dsv4_sampler_params, frequency_penalty) == 32);
static_assert(offsetof(dsv4_sampler_params, penalty_last_n) == 36);
static_assert(offsetof(dsv4_sampler_params, seed) == 40);
static_assert(offsetof(dsv4_sampler_params, stop_tokens) == 48);
static_assert(offsetof(dsv4_sampler_params, n_stop_tokens) == 56);
static_assert(offsetof(dsv4_sampler_params, stop_strings) == 64);
static_assert(offsetof(dsv4_sampler_params, n_stop_strings) == 72);
static_assert(offsetof(dsv4_sampler_params, logit_bias_tokens) == 80);
static_assert(offsetof(dsv4_sampler_params, logit_bias_values) == 88);
static_assert(offsetof(dsv4_sampler_params, n_logit_bias) == 96);
static_assert(sizeof(dsv4_sampler_params) == 104);
static_assert(DSV4_TOKENIZE_SPECIAL == 1u && DSV4_DETOKENIZE_SKIP_SPECIAL == 1u);
static_assert(DSV4_CACHE_WINDOW == 0 && DSV4_CACHE_COMPRESSED == 1 && DSV4_CACHE_INDEXER == 2 &&
              DSV4_CACHE_STATE == 3);
static_assert(DSV4_OK == 0 && DSV4_ERR_INVALID_ARGUMENT == 1 && DSV4_ERR_IO == 2 &&
              DSV4_ERR_CORRUPT_FILE == 3 && DSV4_ERR_INVALID_CONFIG == 4 &&
              DSV4_ERR_MODEL_MISMATCH == 5 && DSV4_ERR_UNSUPPORTED == 6 &&
              DSV4_ERR_OUT_OF_MEMORY == 7 && DSV4_ERR_BUFFER_TOO_SMALL == 8 &&
              DSV4_ERR_OUT_OF_RANGE == 9 && DSV4_ERR_CANCELLED == 10 && DSV4_ERR_INTERNAL == 11);

TEST_CASE("abi: the library's version equals the header's", "[abi]") {
  CHECK(dsv4_version_number() == DSV4_VERSION_NUMBER);
  CHECK(dsv4_model_default_params().struct_size == sizeof(dsv4_model_params));
}

#include <filesystem>
#include <fstream>

namespace {
// A copy of tiny-a with tokenizer files beside the weights (links, not copies, for the weights).
std::filesystem::path model_dir_with_tokenizer(const char* tokenizer_json_or_null) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("dsv4_abi_tok_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(fs::path(DSV4_GOLDEN_DIR) / "tiny-a"))
    fs::create_symlink(entry.path(), dir / entry.path().filename());
  if (tokenizer_json_or_null) {
    std::ofstream(dir / "tokenizer.json") << tokenizer_json_or_null;
  } else {
    fs::create_symlink(fs::path(DSV4_TOKENIZER_DIR) / "tokenizer.json", dir / "tokenizer.json");
    fs::create_symlink(fs::path(DSV4_TOKENIZER_DIR) / "tokenizer_config.json",
                       dir / "tokenizer_config.json");
  }
  return dir;
}
}  // namespace

TEST_CASE("abi: a model directory's tokenizer comes with the model", "[abi]") {
  const auto dir = model_dir_with_tokenizer(nullptr);
  dsv4_model* model = nullptr;
  REQUIRE(dsv4_model_load(dir.c_str(), nullptr, &model) == DSV4_OK);
  dsv4_tokenizer* tok = nullptr;
  REQUIRE(dsv4_model_tokenizer(model, &tok) == DSV4_OK);
  dsv4_model_free(model);  // the tokenizer handle keeps what it needs
  int32_t n_vocab = 0, eos = 0;
  CHECK(dsv4_tokenizer_n_vocab(tok, &n_vocab) == DSV4_OK);
  CHECK(n_vocab == 129280);
  CHECK(dsv4_tokenizer_eos(tok, &eos) == DSV4_OK);
  CHECK(eos == 1);
  dsv4_tokenizer_free(tok);
  std::filesystem::remove_all(dir);
}

TEST_CASE("abi: a broken tokenizer.json fails the model load with CORRUPT_FILE", "[abi]") {
  const auto dir = model_dir_with_tokenizer("{\"model\": {\"type\": \"BPE\", \"vocab\": ");
  dsv4_model* model = reinterpret_cast<dsv4_model*>(1);
  CHECK(dsv4_model_load(dir.c_str(), nullptr, &model) == DSV4_ERR_CORRUPT_FILE);
  CHECK(model == nullptr);
  CHECK(std::string(dsv4_last_error()).find("tokenizer") != std::string::npos);
  std::filesystem::remove_all(dir);
}

#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/weights.hpp"
#include "test_support.hpp"

TEST_CASE("abi: the packed cache on V4's attention shapes, through dsv4_session_cache_bytes",
          "[abi][kv]") {
  // V4's attention widths (d 512, rope 64, indexer c 128, window 128) in a 2-layer model that is
  // small elsewhere: CSA then HCA.
  dsv4::ModelConfig c = dsv4::demo_model_config(3);
  c.head_dim = 512, c.qk_rope_head_dim = 64, c.index_head_dim = 128, c.sliding_window = 128;
  c.num_attention_heads = 2, c.o_groups = 2, c.index_n_heads = 4, c.index_topk = 64;
  c.compress_ratios = {4, 128, 0};
  c.num_hash_layers = 0;
  c.vocab_size = 512;
  dsv4::test::TempDir dir("abi-v4-shapes");
  REQUIRE(dsv4::write_checkpoint(dir.path().string(), c,
                                 dsv4::random_weights(c, 5, dsv4::RandomWeightFormats::official()))
              .is_ok());
  dsv4_model* model = nullptr;
  REQUIRE(dsv4_model_load(dir.path().c_str(), nullptr, &model) == DSV4_OK);
  const int64_t n_tokens = 300;  // past the window: the ring holds 128 entries
  std::vector<int32_t> ids(n_tokens);
  for (int64_t i = 0; i < n_tokens; ++i) ids[size_t(i)] = int32_t((i * 31 + 3) % 512);
  struct Expect {
    int32_t format;
    size_t entry, key;
  };
  for (const Expect e : {Expect{DSV4_KV_F32, 2048, 512}, Expect{DSV4_KV_BF16, 1024, 256},
                         Expect{DSV4_KV_PACKED, 584, 68}}) {
    dsv4_session_params p = dsv4_session_default_params();
    p.kv_format = e.format;
    dsv4_session* session = nullptr;
    REQUIRE(dsv4_session_create(model, &p, &session) == DSV4_OK);
    REQUIRE(dsv4_session_append(session, ids.data(), ids.size(), nullptr) == DSV4_OK);
    size_t window = 0, compressed = 0, indexer = 0;
    REQUIRE(dsv4_session_cache_bytes(session, 0, DSV4_CACHE_WINDOW, &window) == DSV4_OK);
    REQUIRE(dsv4_session_cache_bytes(session, 0, DSV4_CACHE_COMPRESSED, &compressed) == DSV4_OK);
    REQUIRE(dsv4_session_cache_bytes(session, 0, DSV4_CACHE_INDEXER, &indexer) == DSV4_OK);
    INFO("kv_format " << e.format);
    CHECK(window == 128 * e.entry);
    CHECK(compressed == size_t(n_tokens / 4) * e.entry);
    CHECK(indexer == size_t(n_tokens / 4) * e.key);
    REQUIRE(dsv4_session_cache_bytes(session, 1, DSV4_CACHE_COMPRESSED, &compressed) == DSV4_OK);
    CHECK(compressed == size_t(n_tokens / 128) * e.entry);
    dsv4_session_free(session);
  }
  dsv4_session_params bad = dsv4_session_default_params();
  bad.kv_format = 7;
  dsv4_session* session = nullptr;
  CHECK(dsv4_session_create(model, &bad, &session) == DSV4_ERR_INVALID_ARGUMENT);
  CHECK(std::string(dsv4_last_error()).find("kv_format") != std::string::npos);
  // A v2 caller (struct_size 32) with garbage where v3 keeps reserved0: still an f32 session.
  dsv4_session_params v2 = dsv4_session_default_params();
  v2.struct_size = 32;
  std::memset(reinterpret_cast<unsigned char*>(&v2) + 28, 0xAB, 4);
  REQUIRE(dsv4_session_create(model, &v2, &session) == DSV4_OK);
  REQUIRE(dsv4_session_append(session, ids.data(), 8, nullptr) == DSV4_OK);
  size_t window = 0;
  REQUIRE(dsv4_session_cache_bytes(session, 0, DSV4_CACHE_WINDOW, &window) == DSV4_OK);
  CHECK(window == 8 * 2048);
  dsv4_session_free(session);
  dsv4_model_free(model);
}
