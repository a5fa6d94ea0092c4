#include <cstddef>
#include <cstring>
#include <limits>
#include <vector>

#include "capi_guard.hpp"
#include "handles.hpp"

using dsv4::capi::require;

namespace {
constexpr size_t kSessionParamsV1Size = offsetof(dsv4_session_params, max_chunk) + sizeof(int64_t);
constexpr size_t kAppendParamsV1Size = sizeof(dsv4_append_params);

dsv4::Session& session_of(dsv4_session* handle, const char* fn) {
  if (!handle)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument, std::string(fn) + ": session is NULL");
  return *handle->session;
}

dsv4_status append(dsv4_session* handle, const int32_t* tokens, size_t n_tokens, float* logits,
                   const size_t* capacity, const dsv4::AppendOptions& options, const char* fn) {
  dsv4::Session& session = session_of(handle, fn);
  require(tokens != nullptr || n_tokens == 0, "tokens is NULL but n_tokens > 0");
  const int64_t vocab = session.model().config().vocab_size;
  if (n_tokens > size_t(std::numeric_limits<int64_t>::max() / vocab))
    dsv4::fail(dsv4::StatusCode::kInvalidArgument, std::string(fn) + ": n_tokens is too large");
  const size_t rows = options.output == dsv4::OutputMode::kAll    ? n_tokens
                      : options.output == dsv4::OutputMode::kLast ? (n_tokens > 0 ? 1 : 0)
                                                                  : 0;
  if (logits && capacity && *capacity < rows * size_t(vocab))
    dsv4::fail(dsv4::StatusCode::kBufferTooSmall,
               std::string(fn) + ": logits holds " + std::to_string(*capacity) + " floats, " +
                   std::to_string(rows) + " rows x " + std::to_string(vocab) + " vocab need " +
                   std::to_string(rows * size_t(vocab)));
  return dsv4::capi::report(session.append({tokens, n_tokens}, options, logits));
}

// The C++ options a dsv4_session_params asks for (NULL: defaults), checked.
dsv4::SessionOptions session_options(const dsv4_session_params* params, const std::string& fn) {
  const dsv4_session_params p = dsv4::capi::read_params(
      params, dsv4_session_default_params(), kSessionParamsV1Size, "dsv4_session_params");
  require(p.max_positions >= 0, (fn + ": max_positions must be >= 0").c_str());
  require(p.max_chunk >= 0, (fn + ": max_chunk must be >= 0").c_str());
  require(p.n_threads >= 0, (fn + ": n_threads must be >= 0").c_str());
  if (p.kv_format != DSV4_KV_F32 && p.kv_format != DSV4_KV_BF16 && p.kv_format != DSV4_KV_PACKED)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument, fn + ": unknown kv_format " +
                                                       std::to_string(p.kv_format) +
                                                       " (expected DSV4_KV_F32, _BF16 or _PACKED)");
  require(p.ram_budget >= 0, (fn + ": ram_budget must be >= 0").c_str());
  require(p.window_checkpoint_interval >= 0,
          (fn + ": window_checkpoint_interval must be >= 0").c_str());
  dsv4::SessionOptions options;
  options.n_threads = p.n_threads;
  options.max_positions = p.max_positions;
  options.kv_format = dsv4::KvFormat(p.kv_format);
  if (p.max_chunk > 0) options.max_chunk = p.max_chunk;
  options.ram_budget = p.ram_budget;
  if (p.spill_dir) options.spill_dir = p.spill_dir;
  options.window_checkpoint_interval = p.window_checkpoint_interval;
  require(p.lossy_cold_entries == 0 || p.lossy_cold_entries == 1,
          (fn + ": lossy_cold_entries must be 0 or 1").c_str());
  options.lossy_cold_entries = p.lossy_cold_entries != 0;
  return options;
}

// Adapts the C callback (int, non-zero = abort) to the C++ one.
struct AbortAdapter {
  int (*callback)(void*);
  void* user;
  static bool call(void* self) {
    const auto* a = static_cast<const AbortAdapter*>(self);
    return a->callback(a->user) != 0;
  }
};
dsv4_append_params default_append_params() {
  dsv4_append_params p{};
  p.struct_size = sizeof(dsv4_append_params);
  p.output = DSV4_OUTPUT_ALL;
  return p;
}

// Reads dsv4_append_params (NULL: defaults) into the C++ options; the adapter carries the callback.
dsv4::AppendOptions append_options(const dsv4_append_params* params, AbortAdapter& adapter,
                                   const char* fn) {
  const dsv4_append_params p = dsv4::capi::read_params(params, default_append_params(),
                                                       kAppendParamsV1Size, "dsv4_append_params");
  if (p.output != DSV4_OUTPUT_NONE && p.output != DSV4_OUTPUT_LAST && p.output != DSV4_OUTPUT_ALL)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument,
               std::string(fn) + ": unknown output mode " + std::to_string(p.output) +
                   " (expected DSV4_OUTPUT_NONE, _LAST or _ALL)");
  adapter = {p.abort_cb, p.abort_user};
  dsv4::AppendOptions options;
  options.output = dsv4::OutputMode(p.output);
  if (p.abort_cb) {
    options.should_abort = &AbortAdapter::call;
    options.abort_user = &adapter;
  }
  return options;
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
  auto session =
      dsv4::Session::create(model->model, session_options(params, "dsv4_session_create"));
  if (!session) return dsv4::capi::report(session.status());
  *out = new dsv4_session;
  (*out)->session = std::move(session.value());
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API void dsv4_session_free(dsv4_session* session) { delete session; }

static dsv4_status dsv4_session_append_impl(dsv4_session* session, const int32_t* tokens,
                                            size_t n_tokens, float* logits) {
  DSV4_CAPI_BEGIN
  return append(session, tokens, n_tokens, logits, nullptr, dsv4::AppendOptions{},
                "dsv4_session_append");
  DSV4_CAPI_END
}

static dsv4_status dsv4_session_append_checked_impl(dsv4_session* session, const int32_t* tokens,
                                                    size_t n_tokens, float* logits,
                                                    size_t logits_capacity) {
  DSV4_CAPI_BEGIN
  return append(session, tokens, n_tokens, logits, &logits_capacity, dsv4::AppendOptions{},
                "dsv4_session_append_checked");
  DSV4_CAPI_END
}

DSV4_API dsv4_append_params dsv4_append_default_params(void) { return default_append_params(); }

static dsv4_status dsv4_session_append_ex_impl(dsv4_session* session, const int32_t* tokens,
                                               size_t n_tokens, const dsv4_append_params* params,
                                               float* logits, size_t logits_capacity) {
  DSV4_CAPI_BEGIN
  AbortAdapter adapter{};
  const dsv4::AppendOptions options = append_options(params, adapter, "dsv4_session_append_ex");
  return append(session, tokens, n_tokens, logits, &logits_capacity, options,
                "dsv4_session_append_ex");
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_decode_batch(dsv4_session* const* sessions, size_t n_sessions,
                                       const int32_t* tokens, const dsv4_append_params* params,
                                       float* logits, size_t logits_capacity) {
  DSV4_CAPI_BEGIN
  require(sessions != nullptr, "dsv4_decode_batch: sessions is NULL");
  require(tokens != nullptr, "dsv4_decode_batch: tokens is NULL");
  require(n_sessions > 0, "dsv4_decode_batch: n_sessions is 0");
  std::vector<dsv4::Session*> batch(n_sessions);
  for (size_t i = 0; i < n_sessions; ++i) batch[i] = &session_of(sessions[i], "dsv4_decode_batch");
  AbortAdapter adapter{};
  const dsv4::AppendOptions options = append_options(params, adapter, "dsv4_decode_batch");
  const auto vocab = size_t(batch[0]->model().config().vocab_size);
  if (logits && options.output != dsv4::OutputMode::kNone && logits_capacity / vocab < n_sessions)
    dsv4::fail(dsv4::StatusCode::kBufferTooSmall,
               "dsv4_decode_batch: logits holds " + std::to_string(logits_capacity) + " floats, " +
                   std::to_string(n_sessions) + " rows x " + std::to_string(vocab) +
                   " vocab need more");
  return dsv4::capi::report(
      dsv4::Session::decode_batch(batch, {tokens, n_sessions}, options, logits));
  DSV4_CAPI_END
}

static dsv4_status dsv4_session_position_impl(const dsv4_session* session, int64_t* out) {
  DSV4_CAPI_BEGIN
  if (out) *out = 0;
  require(session != nullptr, "dsv4_session_position: session is NULL");
  require(out != nullptr, "dsv4_session_position: out is NULL");
  *out = session->session->position();
  return DSV4_OK;
  DSV4_CAPI_END
}

static dsv4_status dsv4_session_reset_impl(dsv4_session* session) {
  DSV4_CAPI_BEGIN
  session_of(session, "dsv4_session_reset").reset();
  return DSV4_OK;
  DSV4_CAPI_END
}

static dsv4_status dsv4_session_cache_bytes_impl(const dsv4_session* session, int64_t layer,
                                                 int32_t kind, size_t* out) {
  DSV4_CAPI_BEGIN
  if (out) *out = 0;
  require(session != nullptr, "dsv4_session_cache_bytes: session is NULL");
  require(out != nullptr, "dsv4_session_cache_bytes: out is NULL");
  // Taken as int32_t, not the enum type: an out-of-range value is checked, never undefined.
  if (kind < 0 || kind >= dsv4::kNumCacheKinds)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument,
               "dsv4_session_cache_bytes: unknown cache kind " + std::to_string(kind));
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

// Every call on a session leaves its outcome in the session too (dsv4_session_last_error).
static dsv4_status remember(const dsv4_session* session, dsv4_status status) {
  if (session) {
    std::lock_guard<std::mutex> lock(session->error_mutex);
    session->last_error = status == DSV4_OK ? "" : dsv4_last_error();
  }
  return status;
}

DSV4_API dsv4_status dsv4_session_append(dsv4_session* session, const int32_t* tokens,
                                         size_t n_tokens, float* logits) {
  return remember(session, dsv4_session_append_impl(session, tokens, n_tokens, logits));
}
DSV4_API dsv4_status dsv4_session_append_checked(dsv4_session* session, const int32_t* tokens,
                                                 size_t n_tokens, float* logits,
                                                 size_t logits_capacity) {
  return remember(session, dsv4_session_append_checked_impl(session, tokens, n_tokens, logits,
                                                            logits_capacity));
}
DSV4_API dsv4_status dsv4_session_append_ex(dsv4_session* session, const int32_t* tokens,
                                            size_t n_tokens, const dsv4_append_params* params,
                                            float* logits, size_t logits_capacity) {
  return remember(session, dsv4_session_append_ex_impl(session, tokens, n_tokens, params, logits,
                                                       logits_capacity));
}
DSV4_API dsv4_status dsv4_session_position(const dsv4_session* session, int64_t* out) {
  return remember(session, dsv4_session_position_impl(session, out));
}
DSV4_API dsv4_status dsv4_session_reset(dsv4_session* session) {
  return remember(session, dsv4_session_reset_impl(session));
}
DSV4_API dsv4_status dsv4_session_cache_bytes(const dsv4_session* session, int64_t layer,
                                              int32_t kind, size_t* out) {
  return remember(session, dsv4_session_cache_bytes_impl(session, layer, kind, out));
}

DSV4_API dsv4_save_params dsv4_save_default_params(void) {
  dsv4_save_params p{};
  p.struct_size = sizeof(dsv4_save_params);
  p.swa_strategy = DSV4_SWA_FULL;
  return p;
}

// The C++ options a dsv4_save_params asks for (NULL: defaults), checked.
static dsv4::SaveOptions save_options(const dsv4_save_params* params, const std::string& fn) {
  const dsv4_save_params p =
      dsv4::capi::read_params(params, dsv4_save_default_params(),
                              offsetof(dsv4_save_params, checkpoint_interval), "dsv4_save_params");
  if (p.swa_strategy != DSV4_SWA_FULL && p.swa_strategy != DSV4_SWA_CHECKPOINT &&
      p.swa_strategy != DSV4_SWA_NONE)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument,
               fn + ": unknown swa_strategy " + std::to_string(p.swa_strategy));
  if (p.swa_strategy == DSV4_SWA_CHECKPOINT && p.checkpoint_interval <= 0)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument,
               fn + ": DSV4_SWA_CHECKPOINT needs a positive checkpoint_interval, not " +
                   std::to_string(p.checkpoint_interval));
  dsv4::SaveOptions options;
  options.swa_strategy = dsv4::SwaStrategy(p.swa_strategy);
  options.checkpoint_interval = p.checkpoint_interval;
  return options;
}

static dsv4_status dsv4_session_save_impl(const dsv4_session* session, const char* path,
                                          const dsv4_save_params* params) {
  DSV4_CAPI_BEGIN
  require(session != nullptr, "dsv4_session_save: session is NULL");
  require(path != nullptr, "dsv4_session_save: path is NULL");
  return dsv4::capi::report(
      session->session->save(path, save_options(params, "dsv4_session_save")));
  DSV4_CAPI_END
}
DSV4_API dsv4_status dsv4_session_save(const dsv4_session* session, const char* path,
                                       const dsv4_save_params* params) {
  return remember(session, dsv4_session_save_impl(session, path, params));
}

DSV4_API dsv4_status dsv4_session_load(dsv4_model* model, const char* path,
                                       const dsv4_session_params* params, dsv4_session** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(model != nullptr, "dsv4_session_load: model is NULL");
  require(path != nullptr, "dsv4_session_load: path is NULL");
  require(out != nullptr, "dsv4_session_load: out is NULL");
  auto session =
      dsv4::Session::load(model->model, path, session_options(params, "dsv4_session_load"));
  if (!session) return dsv4::capi::report(session.status());
  *out = new dsv4_session;
  (*out)->session = std::move(session.value());
  return DSV4_OK;
  DSV4_CAPI_END
}

static dsv4_status dsv4_session_fork_impl(const dsv4_session* session, dsv4_session** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(session != nullptr, "dsv4_session_fork: session is NULL");
  require(out != nullptr, "dsv4_session_fork: out is NULL");
  auto copy = session->session->fork();
  if (!copy) return dsv4::capi::report(copy.status());
  *out = new dsv4_session;
  (*out)->session = std::move(copy.value());
  return DSV4_OK;
  DSV4_CAPI_END
}
DSV4_API dsv4_status dsv4_session_fork(const dsv4_session* session, dsv4_session** out) {
  return remember(session, dsv4_session_fork_impl(session, out));
}

static dsv4_status dsv4_session_tier_stats_impl(const dsv4_session* session, dsv4_tier_stats* out) {
  DSV4_CAPI_BEGIN
  require(session != nullptr, "dsv4_session_tier_stats: session is NULL");
  require(out != nullptr, "dsv4_session_tier_stats: out is NULL");
  const size_t out_size = out->struct_size;
  require(out_size >= sizeof(dsv4_tier_stats) && out_size <= (size_t(1) << 20),
          "dsv4_session_tier_stats: out->struct_size must be sizeof(dsv4_tier_stats)");
  const dsv4::CacheTierStats t = session->session->tier_stats();
  dsv4_tier_stats r{};
  r.struct_size = sizeof r;
  r.ram_bytes = t.ram_bytes, r.disk_bytes = t.disk_bytes;
  r.block_hits = t.block_hits, r.block_misses = t.block_misses;
  r.bytes_written = t.traffic.file_bytes_written, r.bytes_read = t.traffic.file_bytes_read;
  r.file_bytes = t.file_bytes;
  std::memcpy(out, &r, sizeof r);
  return DSV4_OK;
  DSV4_CAPI_END
}
DSV4_API dsv4_status dsv4_session_tier_stats(const dsv4_session* session, dsv4_tier_stats* out) {
  return dsv4_session_tier_stats_impl(session, out);
}

static dsv4_status dsv4_session_truncate_impl(dsv4_session* session, int64_t n_tokens) {
  DSV4_CAPI_BEGIN
  return dsv4::capi::report(session_of(session, "dsv4_session_truncate").truncate(n_tokens));
  DSV4_CAPI_END
}
DSV4_API dsv4_status dsv4_session_truncate(dsv4_session* session, int64_t n_tokens) {
  return remember(session, dsv4_session_truncate_impl(session, n_tokens));
}

DSV4_API dsv4_status dsv4_prefix_store_open(const char* dir, dsv4_prefix_store** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(dir != nullptr, "dsv4_prefix_store_open: dir is NULL");
  require(out != nullptr, "dsv4_prefix_store_open: out is NULL");
  auto store = dsv4::PrefixStore::open(dir);
  if (!store) return dsv4::capi::report(store.status());
  *out = new dsv4_prefix_store{std::move(store.value())};
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API void dsv4_prefix_store_free(dsv4_prefix_store* store) { delete store; }

DSV4_API dsv4_status dsv4_prefix_store_save(const dsv4_prefix_store* store,
                                            const dsv4_session* session,
                                            const dsv4_save_params* params) {
  DSV4_CAPI_BEGIN
  require(store != nullptr, "dsv4_prefix_store_save: store is NULL");
  require(session != nullptr, "dsv4_prefix_store_save: session is NULL");
  return dsv4::capi::report(
      store->store.save(*session->session, save_options(params, "dsv4_prefix_store_save")));
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_prefix_store_load(const dsv4_prefix_store* store, dsv4_model* model,
                                            const int32_t* tokens, size_t n_tokens,
                                            const dsv4_session_params* params, dsv4_session** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(store != nullptr, "dsv4_prefix_store_load: store is NULL");
  require(model != nullptr, "dsv4_prefix_store_load: model is NULL");
  require(tokens != nullptr || n_tokens == 0, "dsv4_prefix_store_load: tokens is NULL");
  require(out != nullptr, "dsv4_prefix_store_load: out is NULL");
  auto session = store->store.load_longest_prefix(
      model->model, {tokens, n_tokens}, session_options(params, "dsv4_prefix_store_load"));
  if (!session) return dsv4::capi::report(session.status());
  *out = new dsv4_session;
  (*out)->session = std::move(session.value());
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API const char* dsv4_session_last_error(const dsv4_session* session) {
  if (!session) return "";
  // The string is only replaced by a later call on this session, which the caller does not
  // run concurrently with reading the message (documented).
  std::lock_guard<std::mutex> lock(session->error_mutex);
  return session->last_error.c_str();
}

}  // extern "C"
