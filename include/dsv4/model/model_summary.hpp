// A validated overview of a checkpoint against its config: per-layer structure, parameter counts
// and storage bytes by dtype. What `dsv4 info` prints.
#pragma once

#include <map>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/checkpoint_schema.hpp"

namespace dsv4 {

struct LayerSummary {
  int layer = 0;
  AttentionKind attention = AttentionKind::kSlidingWindow;
  int64_t compress_ratio = 0;
  bool hash_routing = false;
  int64_t n_params = 0;  // logical weights of this layer (scales excluded)
  WeightFormat attention_format = WeightFormat::kF32;  // of attn.wq_a
  WeightFormat expert_format = WeightFormat::kF32;     // of ffn.experts.0.w1
};

struct DTypeUsage {
  int64_t n_tensors = 0;
  int64_t n_elements = 0;
  int64_t n_bytes = 0;
};

struct ModelSummary {
  std::vector<LayerSummary> layers;
  int64_t n_params_total = 0;
  int64_t n_params_embedding = 0;        // embed + head
  std::map<DType, DTypeUsage> by_dtype;  // every tensor stored in the checkpoint
  int64_t n_bytes_total = 0;
  int64_t n_unused_tensors = 0;  // stored but not in the schema (MTP layers, extras)
};

// Checks the checkpoint against the schema and summarises it.
Result<ModelSummary> summarize_model(const ModelConfig& config, const Checkpoint& checkpoint);

}  // namespace dsv4
