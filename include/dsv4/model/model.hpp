// A loaded model: validated config + checkpoint (+ weights in the forward-pass layout).
#pragma once

#include <memory>
#include <string>

#include "dsv4/backend/backend.hpp"
#include "dsv4/core/status.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"

namespace dsv4 {

struct ModelLoadOptions {
  std::string backend = "cpu";
  int n_threads = 0;  // 0 = all cores
};

class Model {
 public:
  // Reads DIR/config.json and the checkpoint, and checks every tensor the config needs.
  static Result<std::shared_ptr<const Model>> load(const std::string& dir, const ModelLoadOptions& options = {});

  const ModelConfig& config() const noexcept { return config_; }
  const Checkpoint& checkpoint() const noexcept { return checkpoint_; }
  Backend& backend() const noexcept { return *backend_; }

 private:
  ModelConfig config_;
  Checkpoint checkpoint_;
  std::unique_ptr<Backend> backend_;
};

}  // namespace dsv4
