// ABI freeze: struct layouts and enum values of the released v1 C API never change.
#include <catch2/catch.hpp>
#include <cstddef>

#include "dsv4.h"

static_assert(offsetof(dsv4_model_params, struct_size) == 0);
static_assert(offsetof(dsv4_model_params, backend) == 8);
static_assert(offsetof(dsv4_model_params, n_threads) == 16);
static_assert(offsetof(dsv4_model_params, memory_limit) == 24);  // v2
static_assert(sizeof(dsv4_model_params) == 32);
static_assert(offsetof(dsv4_session_params, struct_size) == 0);
static_assert(offsetof(dsv4_session_params, max_positions) == 8);
static_assert(offsetof(dsv4_session_params, max_chunk) == 16);
static_assert(offsetof(dsv4_session_params, n_threads) == 24);  // v2
static_assert(sizeof(dsv4_session_params) == 32);
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
