#include <algorithm>
#include <cstring>
#include <filesystem>

#include "capi_guard.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/memory_plan.hpp"
#include "handles.hpp"

using dsv4::capi::require;

namespace {
constexpr size_t kModelParamsV1Size = offsetof(dsv4_model_params, n_threads) + sizeof(int32_t);

const dsv4::Model& model_of(const dsv4_model* handle, const char* fn) {
  if (!handle) dsv4::fail(dsv4::StatusCode::kInvalidArgument, std::string(fn) + ": model is NULL");
  return *handle->model;
}

template <class F>
dsv4_status query(const dsv4_model* handle, int64_t* out, const char* fn, F&& get) {
  DSV4_CAPI_BEGIN
  if (out) *out = 0;
  const dsv4::Model& m = model_of(handle, fn);
  if (!out) dsv4::fail(dsv4::StatusCode::kInvalidArgument, std::string(fn) + ": out is NULL");
  *out = get(m.config());
  return DSV4_OK;
  DSV4_CAPI_END
}
}  // namespace

extern "C" {

DSV4_API dsv4_model_params dsv4_model_default_params(void) {
  dsv4_model_params p{};
  p.struct_size = sizeof(dsv4_model_params);
  p.backend = nullptr;
  p.n_threads = 0;
  return p;
}

DSV4_API dsv4_status dsv4_model_load(const char* dir, const dsv4_model_params* params,
                                     dsv4_model** out) {
  DSV4_CAPI_BEGIN
  if (out) *out = nullptr;
  require(dir != nullptr, "dsv4_model_load: dir is NULL");
  require(out != nullptr, "dsv4_model_load: out is NULL");
  const dsv4_model_params p = dsv4::capi::read_params(params, dsv4_model_default_params(),
                                                      kModelParamsV1Size, "dsv4_model_params");
  dsv4::ModelLoadOptions options;
  if (p.backend) options.backend = p.backend;
  options.n_threads = p.n_threads;
  options.memory_limit = size_t(p.memory_limit);
  if (p.numerics != DSV4_NUMERICS_EXACT && p.numerics != DSV4_NUMERICS_OFFICIAL)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument,
               "dsv4_model_load: unknown numerics " + std::to_string(p.numerics) +
                   " (expected DSV4_NUMERICS_EXACT or DSV4_NUMERICS_OFFICIAL)");
  options.numerics = dsv4::Numerics(p.numerics);
  if (p.weights != DSV4_WEIGHTS_REPACKED && p.weights != DSV4_WEIGHTS_STORED)
    dsv4::fail(dsv4::StatusCode::kInvalidArgument,
               "dsv4_model_load: unknown weights " + std::to_string(p.weights) +
                   " (expected DSV4_WEIGHTS_REPACKED or DSV4_WEIGHTS_STORED)");
  options.repack_weights = p.weights == DSV4_WEIGHTS_REPACKED;
  auto model = dsv4::Model::load(dir, options);
  if (!model) return dsv4::capi::report(model.status());
  // A tokenizer shipped next to the weights comes with the model; a broken one fails the load
  // rather than surfacing later as garbage text.
  std::shared_ptr<const dsv4::text::Tokenizer> tokenizer;
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json", ec)) {
    auto loaded = dsv4::text::Tokenizer::load(dir);
    if (!loaded) return dsv4::capi::report(loaded.status());
    tokenizer = std::move(loaded.value());
  }
  *out = new dsv4_model{std::move(model.value()), std::move(tokenizer)};
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API void dsv4_model_free(dsv4_model* model) { delete model; }

DSV4_API dsv4_status dsv4_model_numerics(const dsv4_model* model, int32_t* out) {
  DSV4_CAPI_BEGIN
  const dsv4::Model& m = model_of(model, "dsv4_model_numerics");
  require(out != nullptr, "dsv4_model_numerics: out is NULL");
  *out = int32_t(m.numerics());
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_model_resident_bytes(const dsv4_model* model, size_t* out) {
  DSV4_CAPI_BEGIN
  if (out) *out = 0;
  const dsv4::Model& m = model_of(model, "dsv4_model_resident_bytes");
  require(out != nullptr, "dsv4_model_resident_bytes: out is NULL");
  *out = m.resident_bytes();
  return DSV4_OK;
  DSV4_CAPI_END
}

DSV4_API dsv4_status dsv4_model_n_vocab(const dsv4_model* model, int64_t* out) {
  return query(model, out, "dsv4_model_n_vocab",
               [](const dsv4::ModelConfig& c) { return c.vocab_size; });
}
DSV4_API dsv4_status dsv4_model_n_layers(const dsv4_model* model, int64_t* out) {
  return query(model, out, "dsv4_model_n_layers",
               [](const dsv4::ModelConfig& c) { return c.num_hidden_layers; });
}
DSV4_API dsv4_status dsv4_model_n_embd(const dsv4_model* model, int64_t* out) {
  return query(model, out, "dsv4_model_n_embd",
               [](const dsv4::ModelConfig& c) { return c.hidden_size; });
}

DSV4_API dsv4_status dsv4_model_layer_compress_ratio(const dsv4_model* model, int64_t layer,
                                                     int64_t* out) {
  return query(model, out, "dsv4_model_layer_compress_ratio", [layer](const dsv4::ModelConfig& c) {
    if (layer < 0 || layer >= c.num_hidden_layers)
      dsv4::fail(dsv4::StatusCode::kOutOfRange, "dsv4_model_layer_compress_ratio: layer " +
                                                    std::to_string(layer) + " is not in [0, " +
                                                    std::to_string(c.num_hidden_layers) + ")");
    return c.compress_ratio(layer);
  });
}

DSV4_API dsv4_plan_params dsv4_plan_default_params(void) {
  dsv4_plan_params p{};
  p.struct_size = sizeof(dsv4_plan_params);
  return p;
}

DSV4_API dsv4_status dsv4_plan(const dsv4_model* model, const char* preset,
                               const dsv4_plan_params* params, dsv4_plan_result* out) {
  DSV4_CAPI_BEGIN
  require(out != nullptr, "dsv4_plan: out is NULL");
  require((model != nullptr) != (preset != nullptr),
          "dsv4_plan: give exactly one of model and preset");
  const size_t out_size = out->struct_size;
  require(out_size >= offsetof(dsv4_plan_result, cache_disk_bytes) + sizeof(uint64_t) &&
              out_size <= (size_t(1) << 20),
          "dsv4_plan: out->struct_size must be sizeof(dsv4_plan_result)");
  const dsv4_plan_params p = dsv4::capi::read_params(params, dsv4_plan_default_params(),
                                                     sizeof(dsv4_plan_params), "dsv4_plan_params");
  require(p.kv_format >= DSV4_KV_F32 && p.kv_format <= DSV4_KV_PACKED,
          "dsv4_plan: unknown kv_format");
  require(p.ram_budget <= uint64_t(INT64_MAX), "dsv4_plan: ram_budget is too large");
  dsv4::ModelConfig config;
  if (model) {
    config = model->model->config();
  } else if (!dsv4::preset_config(preset, &config)) {
    dsv4::fail(dsv4::StatusCode::kInvalidArgument,
               std::string("dsv4_plan: unknown preset ") + preset);
  }
  auto plan =
      dsv4::plan_memory(config, p.context, dsv4::KvFormat(p.kv_format), int64_t(p.ram_budget));
  if (!plan) return dsv4::capi::report(plan.status());
  const dsv4::MemoryPlan& m = plan.value();
  dsv4_plan_result r{};
  r.struct_size = sizeof(dsv4_plan_result);
  r.weight_bytes =
      model ? uint64_t(model->model->resident_bytes()) : uint64_t(m.total_weight_bytes);
  r.cache_bytes = uint64_t(m.total_cache_bytes);
  for (int k = 0; k < 4; ++k) r.cache_bytes_by_kind[k] = uint64_t(m.cache_by_kind[size_t(k)]);
  r.cache_bytes_per_token = m.cache_bytes_per_token;
  r.dense_mla_bytes = uint64_t(m.dense_mla_bytes);
  r.cache_ram_bytes = uint64_t(m.cache_ram_bytes);
  r.cache_disk_bytes = uint64_t(m.cache_disk_bytes);
  std::memcpy(out, &r, std::min(out_size, sizeof r));
  out->struct_size = std::min(out_size, sizeof r);
  return DSV4_OK;
  DSV4_CAPI_END
}

}  // extern "C"
