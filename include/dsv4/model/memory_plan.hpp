// The memory planner: what a model and a session of a given context need, before anything is
// loaded. What `dsv4 plan` prints and `dsv4_plan` returns.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/kv_cache.hpp"

namespace dsv4 {

struct MemoryPlan {
  int64_t context = 0;
  KvFormat kv_format = KvFormat::kF32;
  std::map<DType, int64_t> weight_bytes;  // by stored dtype
  int64_t total_weight_bytes = 0;
  // cache_bytes[layer][kind] at `context` tokens (CacheKind order: window, compressed, indexer,
  // compressor state), as a session's memory() would report them.
  std::vector<std::array<int64_t, kNumCacheKinds>> cache_bytes;
  std::array<int64_t, kNumCacheKinds> cache_by_kind{};
  int64_t total_cache_bytes = 0;
  // Growth per token once the window is full (compressed entries and indexer keys; the ring and
  // the compressor state do not grow), averaged over the compression ratios.
  double cache_bytes_per_token = 0.0;
  // A V3.2-style dense MLA cache at the same context: 576 bf16 values per token per layer in
  // each of 61 layers.
  int64_t dense_mla_bytes = 0;
  // Under a RAM budget for the cache (0 = none): what fits in RAM and what would go to disk.
  int64_t ram_budget = 0;
  int64_t cache_ram_bytes = 0, cache_disk_bytes = 0;
};

inline constexpr int64_t kDenseMlaLayers = 61, kDenseMlaElements = 576;

// The plan for `config` at `context` tokens. Weights: the checkpoint's bytes by dtype when one is
// given, else the official checkpoints' formats (FP8 linears with 128×128 scales, FP4 routed
// experts with 1×32 scales, BF16 embeddings, head, compressors, router and indexer weights, F32
// vectors).
Result<MemoryPlan> plan_memory(const ModelConfig& config, int64_t context, KvFormat kv_format,
                               int64_t ram_budget, const Checkpoint* checkpoint = nullptr);

}  // namespace dsv4
