#include "dsv4/model/demo_model.hpp"

namespace dsv4 {

namespace {
// The parts the two released models share.
ModelConfig v4_common() {
  ModelConfig c;
  c.vocab_size = 129280;
  c.num_attention_heads = 64;
  c.head_dim = 512;
  c.qk_rope_head_dim = 64;
  c.o_lora_rank = 1024;
  c.sliding_window = 128;
  c.index_n_heads = 64;
  c.index_head_dim = 128;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 6;
  c.num_hash_layers = 3;
  c.scoring_func = ScoringFunc::kSqrtSoftplus;
  c.swiglu_limit = 10.0;
  c.hc_mult = 4;
  c.hc_sinkhorn_iters = 20;
  c.hc_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.compress_rope_theta = 160000.0;
  c.has_rope_scaling = true;
  c.rope_scaling = {"yarn", 16.0, 65536, 32.0, 1.0};
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 1 << 20;
  return c;
}
}  // namespace

ModelConfig demo_model_config(int64_t n_layers) {
  // V4's structure and constants at scaled-down widths.
  ModelConfig c = v4_common();  // the real vocabulary: the real tokenizer's ids all fit
  c.hidden_size = 256;
  c.num_hidden_layers = n_layers;
  c.num_attention_heads = 4;
  c.head_dim = 128;
  c.qk_rope_head_dim = 32;
  c.q_lora_rank = 128;
  c.o_groups = 2;
  c.o_lora_rank = 64;
  for (int64_t l = 0; l < n_layers; ++l) {
    const bool window_only = l < 2 || l == n_layers - 1;
    c.compress_ratios.push_back(window_only ? 0 : ((l % 2 == 0) ? 4 : 128));
  }
  c.index_n_heads = 8;
  c.index_head_dim = 32;
  c.index_topk = 128;
  c.n_routed_experts = 16;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 128;
  c.num_hash_layers = 2;
  c.routed_scaling_factor = 1.5;
  return c;
}

ModelConfig v4_flash_config() {
  ModelConfig c = v4_common();
  c.hidden_size = 4096;
  c.num_hidden_layers = 43;
  c.q_lora_rank = 1024;
  c.o_groups = 8;
  c.index_topk = 512;
  c.n_routed_experts = 256;
  c.moe_intermediate_size = 2048;
  c.routed_scaling_factor = 1.5;
  // L0-L1 window only, even layers 2..42 CSA, odd 3..41 HCA; the 44th entry is the MTP layer.
  for (int64_t l = 0; l < 44; ++l)
    c.compress_ratios.push_back(l < 2 || l == 43 ? 0 : (l % 2 == 0 ? 4 : 128));
  return c;
}

ModelConfig v4_pro_config() {
  ModelConfig c = v4_common();
  c.hidden_size = 7168;
  c.num_hidden_layers = 61;
  c.q_lora_rank = 1536;
  c.o_groups = 16;
  c.index_topk = 1024;
  c.n_routed_experts = 384;
  c.moe_intermediate_size = 3072;
  c.routed_scaling_factor = 2.5;
  // L0, L1 and odd layers HCA, even 2..60 CSA; the 62nd entry is the MTP layer.
  for (int64_t l = 0; l < 62; ++l)
    c.compress_ratios.push_back(l == 61 ? 0 : (l < 2 || l % 2 == 1 ? 128 : 4));
  return c;
}

ModelConfig v4_flash_slice_config(int64_t n_layers) {
  ModelConfig c = v4_flash_config();
  c.vocab_size = 16384;
  c.num_hidden_layers = n_layers;
  c.num_hash_layers = 0;
  c.compress_ratios.clear();
  for (int64_t l = 0; l < n_layers; ++l) c.compress_ratios.push_back(l % 2 == 0 ? 4 : 128);
  return c;
}

bool preset_config(const std::string& name, ModelConfig* out) {
  if (name == "v4-flash") {
    *out = v4_flash_config();
  } else if (name == "v4-pro") {
    *out = v4_pro_config();
  } else if (name == "v4-flash-slice") {
    *out = v4_flash_slice_config(2);
  } else if (name == "demo") {
    *out = demo_model_config(12);
  } else {
    return false;
  }
  return true;
}

}  // namespace dsv4
