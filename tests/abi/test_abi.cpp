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
