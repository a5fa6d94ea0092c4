// A loaded model: validated config, weights in the forward-pass layout, and the backend it runs on.
// Immutable after loading; share it between sessions and threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dsv4/backend/backend.hpp"
#include "dsv4/core/status.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/model/weights.hpp"

namespace dsv4 {

struct ModelLoadOptions {
  // "cpu", "cuda", a registered backend, or "best": the most capable available backend that
  // supports every operator the model needs. A named backend lacking one fails the load
  // (kUnsupported, naming the operator).
  std::string backend = "cpu";
  int n_threads = 0;  // 0 = all cores
  // Refuse (kOutOfMemory, with the numbers) a load whose estimated resident size exceeds this;
  // 0 = the memory the machine has available now (MemAvailable).
  size_t memory_limit = 0;
  // kExact (fp32 on the dequantised weights, the default) or kOfficial (DeepSeek's inference
  // numerics, docs/numerics.md; its sessions store the packed cache).
  Numerics numerics = Numerics::kExact;
  // Whether each GEMM weight is put in the layout its backend reads fastest
  // (Backend::gemm_weight_layout; the CPU backend interleaves the rows of FP8, FP4 and short-row
  // matrices in groups of 4), copied once into memory of the model's own, in huge pages (the mapped
  // file's pages are given back as each matrix is copied, so the resident size stays about the
  // checkpoint's). false keeps the weights as stored: mapped from the files, no copy at load,
  // shared with the page cache.
  bool repack_weights = true;
  // Told (steps done, steps total) while Model::load reads and checks the weights (the long part
  // of loading a big checkpoint) and then repacks them: a step per layer read, and with
  // repack_weights as many again for the copies (the matrices copied, in proportion); called
  // from loader threads, one call at a time.
  LoadProgress progress;
};

// One operator the model graph will call, and the first tensor (or role) that needs it.
struct RequiredOperator {
  OpDesc op;
  std::string needed_by;
};
// Every distinct operator (and weight format, for GEMM) the forward pass of these weights calls.
std::vector<RequiredOperator> required_operators(const ModelConfig& config,
                                                 const ModelWeights& weights,
                                                 Numerics numerics = Numerics::kExact);

// Bytes of memory the machine can give now without swapping (Linux MemAvailable; 0 if unknown).
size_t available_memory_bytes() noexcept;

class Model {
 public:
  // Reads DIR/config.json and maps the checkpoint, checks every tensor, estimates the resident
  // size against the memory limit, and views the weights in their stored formats.
  static Result<std::shared_ptr<const Model>> load(const std::string& dir,
                                                   const ModelLoadOptions& options = {});
  // A model from weights built in memory (e.g. random_weights for the demo).
  static Result<std::shared_ptr<const Model>> from_weights(ModelConfig config, ModelWeights weights,
                                                           const ModelLoadOptions& options = {});

  const ModelConfig& config() const noexcept { return config_; }
  const ModelWeights& weights() const noexcept { return weights_; }
  Backend& backend() const noexcept { return *backend_; }
  int n_threads() const noexcept { return n_threads_; }
  Numerics numerics() const noexcept { return numerics_; }
  // Identifies the model a saved session belongs to: a hash of the config and of sample rows of
  // the weights (first and last rows of the embedding, the head and each layer's query
  // projection), so another checkpoint of the same shape is told apart without reading it all.
  uint64_t fingerprint() const noexcept { return fingerprint_; }
  bool official() const noexcept { return numerics_ == Numerics::kOfficial; }
  // Bytes the weights occupy as held (stored formats; see ModelWeights::resident_bytes).
  size_t resident_bytes() const noexcept { return weights_.resident_bytes(); }
  // RoPE frequencies θ_i of window-only layers and of compressed (CSA/HCA) layers (the official
  // code's fp32 values in the official numerics).
  const std::vector<double>& rope_theta(bool compressed_layer) const noexcept {
    return compressed_layer ? theta_compressed_ : theta_window_;
  }

 private:
  // `repack_progress`: relayout_gemm_weights' progress (optional).
  static Result<std::shared_ptr<const Model>> finish(
      std::shared_ptr<Model> model, const ModelLoadOptions& options,
      const std::function<void(int64_t, int64_t)>& repack_progress = {});
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Backend> backend_;
  int n_threads_ = 0;
  Numerics numerics_ = Numerics::kExact;
  uint64_t fingerprint_ = 0;
  std::vector<double> theta_window_, theta_compressed_;
};

}  // namespace dsv4
