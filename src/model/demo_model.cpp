#include "dsv4/model/demo_model.hpp"

namespace dsv4 {

ModelConfig demo_model_config(int64_t n_layers) {
  ModelConfig c;
  c.vocab_size = 4096;
  c.hidden_size = 256;
  c.num_hidden_layers = n_layers;
  c.num_attention_heads = 4;
  c.head_dim = 128;
  c.qk_rope_head_dim = 32;
  c.q_lora_rank = 128;
  c.o_groups = 2;
  c.o_lora_rank = 64;
  c.sliding_window = 128;  // as V4
  for (int64_t l = 0; l < n_layers; ++l) {
    const bool window_only = l < 2 || l == n_layers - 1;
    c.compress_ratios.push_back(window_only ? 0 : ((l % 2 == 0) ? 4 : 128));
  }
  c.index_n_heads = 8;
  c.index_head_dim = 32;
  c.index_topk = 128;
  c.n_routed_experts = 16;
  c.num_experts_per_tok = 2;
  c.n_shared_experts = 1;
  c.moe_intermediate_size = 128;
  c.num_hash_layers = 2;
  c.scoring_func = ScoringFunc::kSqrtSoftplus;
  c.routed_scaling_factor = 1.5;
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

}  // namespace dsv4
