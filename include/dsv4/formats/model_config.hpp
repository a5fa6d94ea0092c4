// ModelConfig: the official DeepSeek-V4 config.json, parsed and validated (never computed on).
// Every field is checked (types, positivity, divisibility, cross-field consistency); a failure is
// StatusCode::kInvalidConfig naming the key, or kCorruptFile when the text is not JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/core/status.hpp"

namespace dsv4 {

enum class ScoringFunc { kSqrtSoftplus, kSigmoid, kSoftmax };
std::string_view scoring_func_name(ScoringFunc f) noexcept;

// What a decoder layer attends to, derived from its compress ratio m.
enum class AttentionKind {
  kSlidingWindow /* m = 0 */,
  kCompressedSparse /* m = 4 */,
  kHeavilyCompressed /* other m */
};
std::string_view attention_kind_name(AttentionKind k) noexcept;  // "SWA", "CSA", "HCA"

inline constexpr int kCsaCompressRatio = 4;

struct RopeScaling {
  std::string type = "yarn";
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

struct QuantizationConfig {
  bool present = false;
  std::string quant_method;
  std::string fmt;        // "e4m3"
  std::string scale_fmt;  // "ue8m0"
  int64_t weight_block_out = 128;
  int64_t weight_block_in = 128;
};

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;  // D
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;  // H
  int64_t num_key_value_heads = 1;
  int64_t head_dim = 0;          // d
  int64_t qk_rope_head_dim = 0;  // r
  int64_t q_lora_rank = 0;
  int64_t o_groups = 0;
  int64_t o_lora_rank = 0;
  int64_t sliding_window = 0;            // W
  std::vector<int64_t> compress_ratios;  // at least num_hidden_layers entries
  int64_t index_n_heads = 0;             // H_I
  int64_t index_head_dim = 0;            // c
  int64_t index_topk = 0;
  int64_t n_routed_experts = 0;     // E
  int64_t num_experts_per_tok = 0;  // k
  int64_t n_shared_experts = 0;
  int64_t moe_intermediate_size = 0;
  int64_t num_hash_layers = 0;
  ScoringFunc scoring_func = ScoringFunc::kSqrtSoftplus;
  double routed_scaling_factor = 1.0;
  double swiglu_limit = 0.0;  // 0 = no clamp
  int64_t hc_mult = 1;        // n
  int64_t hc_sinkhorn_iters = 20;
  double hc_eps = 1e-6;
  double rope_theta = 10000.0;
  double compress_rope_theta = 160000.0;
  bool has_rope_scaling = false;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  int64_t num_nextn_predict_layers = 0;
  int64_t max_position_embeddings = 0;
  std::string expert_dtype;  // "" (same as the rest) or "fp4"
  QuantizationConfig quantization;

  int64_t compress_ratio(int64_t layer) const { return compress_ratios[size_t(layer)]; }
  AttentionKind attention_kind(int64_t layer) const;
  bool is_hash_layer(int64_t layer) const { return layer < num_hash_layers; }
  bool has_csa_layer() const;
};

// Parses config.json text. `source` names the file in messages.
Result<ModelConfig> parse_model_config(std::string_view json_text,
                                       std::string_view source = "config.json");
// Reads DIR/config.json (or the file itself when `path` is a file).
Result<ModelConfig> load_model_config(const std::string& path);

// The config as official config.json text (what load_model_config reads back to an equal config).
std::string model_config_to_json(const ModelConfig& config);
// Re-checks a config built in code (the embedded demo model, tests).
Status validate_model_config(const ModelConfig& config);

}  // namespace dsv4
