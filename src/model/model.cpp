#include "dsv4/model/model.hpp"

#include <omp.h>

#include "dsv4/backend/registry.hpp"
#include "dsv4/model/checkpoint_schema.hpp"

namespace dsv4 {

Result<std::shared_ptr<const Model>> Model::load(const std::string& dir, const ModelLoadOptions& options) {
  return capture_result([&]() -> std::shared_ptr<const Model> {
    if (options.n_threads < 0) fail(StatusCode::kInvalidArgument, "n_threads must be >= 0");
    auto model = std::shared_ptr<Model>(new Model());
    auto config = load_model_config(dir);
    throw_if_error(config.status());
    model->config_ = std::move(config.value());
    auto checkpoint = Checkpoint::open(dir);
    throw_if_error(checkpoint.status());
    model->checkpoint_ = std::move(checkpoint.value());
    throw_if_error(check_checkpoint(model->checkpoint_, model->config_));
    auto backend = create_backend(options.backend);
    throw_if_error(backend.status());
    model->backend_ = std::move(backend.value());
    if (options.n_threads > 0) omp_set_num_threads(options.n_threads);
    return model;
  });
}

}  // namespace dsv4
