#include <limits>

#include "capi_guard.hpp"
#include "handles.hpp"

using dsv4::capi::require;

namespace {
constexpr size_t kSessionParamsV1Size = offsetof(dsv4_session_params, max_chunk) + sizeof(int64_t);

dsv4::Session& session_of(dsv4_session* handle, const char* fn) {
  if (!handle)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument, std::string(fn) + ": session is NULL");
  return *handle->session;
}

dsv4_status append(dsv4_session* handle, const int32_t* tokens, size_t n_tokens, float* logits,
                   const size_t* capacity, const char* fn) {
  dsv4::Session& session = session_of(handle, fn);
  require(tokens != nullptr || n_tokens == 0, "tokens is NULL but n_tokens > 0");
  const int64_t vocab = session.model().config().vocab_size;
  if (n_tokens > size_t(std::numeric_limits<int64_t>::max() / vocab))
    dsv4::fail(dsv4::StatusCode::kInvalidArgument, std::string(fn) + ": n_tokens is too large");
  if (logits && capacity && *capacity < n_tokens * size_t(vocab))
    dsv4::fail(dsv4::StatusCode::kBufferTooSmall,
               std::string(fn) + ": logits holds " + std::to_string(*capacity) + " floats, " +
                   std::to_string(n_tokens) + " tokens x " + std::to_string(vocab) +
                   " vocab need " + std::to_string(n_tokens * size_t(vocab)));
  return dsv4::capi::report(session.append({tokens, n_tokens}, logits));
}
}  // namespace

extern "C" {

DSV4_API dsv4_session_params dsv4_session_default_params(void) {
  dsv4_session_params p{};
  p.struct_size = sizeof(dsv4_session_params);
  return p;
}

DSV4_API dsv4_status dsv4_session_create(dsv4_model* model, const dsv4_session_params* params,
                                         dsv4_session** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(model != nullptr, "dsv4_session_create: model is NULL");
  require(out != nullptr, "dsv4_session_create: out is NULL");
  const dsv4_session_params p = dsv4::capi::read_params(
      params, dsv4_session_default_params(), kSessionParamsV1Size, "dsv4_session_params");
  require(p.max_positions >= 0, "dsv4_session_create: max_positions must be >= 0");
  require(p.max_chunk >= 0, "dsv4_session_create: max_chunk must be >= 0");
  dsv4::SessionOptions options;
  options.max_positions = p.max_positions;
  if (p.max_chunk > 0) options.max_chunk = p.max_chunk;
  auto session = dsv4::Session::create(model->model, options);
  if (!session) return dsv4::capi::report(session.status());
  *out = new dsv4_session{std::move(session.value())};
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API void dsv4_session_free(dsv4_session* session) { delete session; }

DSV4_API dsv4_status dsv4_session_append(dsv4_session* session, const int32_t* tokens,
                                         size_t n_tokens, float* logits) {
  DSV4_CAPI_BEGIN
  return append(session, tokens, n_tokens, logits, nullptr, "dsv4_session_append");
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_session_append_checked(dsv4_session* session, const int32_t* tokens,
                                                 size_t n_tokens, float* logits,
                                                 size_t logits_capacity) {
  DSV4_CAPI_BEGIN
  return append(session, tokens, n_tokens, logits, &logits_capacity, "dsv4_session_append_checked");
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_session_position(const dsv4_session* session, int64_t* out) {
  DSV4_CAPI_BEGIN
  if (out) *out = 0;
  require(session != nullptr, "dsv4_session_position: session is NULL");
  require(out != nullptr, "dsv4_session_position: out is NULL");
  *out = session->session->position();
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_session_reset(dsv4_session* session) {
  DSV4_CAPI_BEGIN
  session_of(session, "dsv4_session_reset").reset();
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_session_cache_bytes(const dsv4_session* session, int64_t layer,
                                              dsv4_cache_kind kind, size_t* out) {
  DSV4_CAPI_BEGIN
  if (out) *out = 0;
  require(session != nullptr, "dsv4_session_cache_bytes: session is NULL");
  require(out != nullptr, "dsv4_session_cache_bytes: out is NULL");
  if (int(kind) < 0 || int(kind) >= dsv4::kNumCacheKinds)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument,
               "dsv4_session_cache_bytes: unknown cache kind " + std::to_string(int(kind)));
  const dsv4::CacheMemory memory = session->session->memory();
  const int64_t n_layers = int64_t(memory.bytes_used.size());
  if (layer < -1 || layer >= n_layers)
    dsv4::fail(dsv4::StatusCode::kOutOfRange, "dsv4_session_cache_bytes: layer " +
                                                  std::to_string(layer) + " is not in [-1, " +
                                                  std::to_string(n_layers) + ")");
  *out = layer < 0 ? memory.total_used(dsv4::CacheKind(kind))
                   : memory.bytes_used[size_t(layer)][size_t(kind)];
  return DSV4_OK;
  DSV4_CAPI_END
}

}  // extern "C"
