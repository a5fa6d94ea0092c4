#include "dsv4/model/model.hpp"

#include <cstdio>

#include "dsv4/backend/registry.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/checkpoint_schema.hpp"
#include "dsv4/ops/rope.hpp"

namespace dsv4 {
namespace {
void check_options(const ModelLoadOptions& options) {
  if (options.n_threads < 0) fail(StatusCode::kInvalidArgument, "n_threads must be >= 0");
}

std::string gib(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(1ull << 30));
  return buf;
}

void check_memory(size_t needed, const ModelLoadOptions& options) {
  const size_t available = available_memory_bytes();
  const size_t limit = options.memory_limit ? options.memory_limit : available;
  if (limit == 0 || needed <= limit) return;
  fail(StatusCode::kOutOfMemory,
       "the model needs about " + std::to_string(needed) + " bytes (" + gib(needed) +
           ") resident, over the limit of " + std::to_string(limit) + " bytes (" + gib(limit) +
           (options.memory_limit ? ", set by the caller" : ", the memory available now") + ")");
}
}  // namespace

size_t available_memory_bytes() noexcept {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  size_t kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %zu kB", &kib) == 1) break;
  std::fclose(f);
  return kib * 1024;
}

Result<std::shared_ptr<const Model>> Model::finish(std::shared_ptr<Model> model,
                                                   const ModelLoadOptions& options) {
  return capture_result([&]() -> std::shared_ptr<const Model> {
    check_options(options);
    throw_if_error(validate_model_config(model->config_));
    auto backend = create_backend(options.backend);
    throw_if_error(backend.status());
    model->backend_ = std::move(backend.value());
    model->n_threads_ = options.n_threads;
    const ModelConfig& c = model->config_;
    ops::RopeParams window{c.qk_rope_head_dim, c.rope_theta};
    ops::RopeParams compressed{c.qk_rope_head_dim, c.compress_rope_theta};
    if (c.has_rope_scaling) {
      compressed.yarn = true;
      compressed.factor = c.rope_scaling.factor;
      compressed.original_max_position = c.rope_scaling.original_max_position_embeddings;
      compressed.beta_fast = c.rope_scaling.beta_fast;
      compressed.beta_slow = c.rope_scaling.beta_slow;
    }
    model->theta_window_ = ops::rope_frequencies(window);
    model->theta_compressed_ = ops::rope_frequencies(compressed);
    return model;
  });
}

Result<std::shared_ptr<const Model>> Model::load(const std::string& dir,
                                                 const ModelLoadOptions& options) {
  auto model = std::shared_ptr<Model>(new Model());
  Status loaded = capture_status([&] {
    check_options(options);  // before the expensive part
    auto config = load_model_config(dir);
    throw_if_error(config.status());
    model->config_ = std::move(config.value());
    auto opened = Checkpoint::open(dir);
    throw_if_error(opened.status());
    auto checkpoint = std::make_shared<const Checkpoint>(std::move(opened.value()));
    throw_if_error(check_checkpoint(*checkpoint, model->config_));
    check_memory(estimate_resident_bytes(*checkpoint, model->config_), options);
    auto weights = load_weights(checkpoint, model->config_);
    throw_if_error(weights.status());
    model->weights_ = std::move(weights.value());
  });
  if (!loaded) return loaded;
  return finish(std::move(model), options);
}

Result<std::shared_ptr<const Model>> Model::from_weights(ModelConfig config, ModelWeights weights,
                                                         const ModelLoadOptions& options) {
  auto model = std::shared_ptr<Model>(new Model());
  model->config_ = std::move(config);
  model->weights_ = std::move(weights);
  return finish(std::move(model), options);
}

}  // namespace dsv4
