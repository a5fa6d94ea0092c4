// A session: one sequence's KV cache and position over a shared Model. Tokens are appended in
// chunks of any size (a prompt at once, in pieces, or one at a time for decode); every way of
// feeding the same tokens gives the same logits. One thread at a time per session.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/model/kv_cache.hpp"
#include "dsv4/model/model.hpp"

namespace dsv4 {

struct SessionOptions {
  int64_t max_positions = 0;  // 0 = unlimited
  int64_t max_chunk = 1024;   // tokens per internal forward step (bounds activation memory)
};

// Optional record of intermediate values, for tests and debugging.
struct ForwardTrace {
  std::vector<float> layer_inputs;  // [n_layers, T, hc_mult, D]: the streams entering each layer
  std::vector<float> final_hidden;  // [T, D]: RMSNorm_norm(Σ_j pre_j X_j), the input of the head
};

class Session {
 public:
  static Result<std::unique_ptr<Session>> create(std::shared_ptr<const Model> model,
                                                 const SessionOptions& options = {});

  // Appends tokens and, when `logits` is not null, writes [tokens.size(), vocab] logits.
  // Token ids and limits are checked before any state changes; on such errors the session is
  // unchanged. If the forward pass itself fails (e.g. out of memory) part of the cache may already
  // be updated: the session then refuses further appends until reset().
  Status append(std::span<const int32_t> tokens, float* logits, ForwardTrace* trace = nullptr);

  int64_t position() const noexcept { return position_; }
  const Model& model() const noexcept { return *model_; }
  CacheMemory memory() const { return cache_.memory(); }
  const KvCache& cache() const noexcept { return cache_; }
  void reset();

 private:
  Session(std::shared_ptr<const Model> model, const SessionOptions& options);
  void forward_chunk(const int32_t* tokens, int64_t n_tokens, float* logits, ForwardTrace* trace);

  std::shared_ptr<const Model> model_;
  SessionOptions options_;
  KvCache cache_;
  int64_t position_ = 0;
  bool broken_ = false;  // a forward pass failed midway; only reset() recovers
};

}  // namespace dsv4
