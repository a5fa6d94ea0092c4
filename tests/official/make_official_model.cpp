// Writes a small random checkpoint in the official layout (FP8 attention and shared expert, FP4
// routed experts, BF16 embeddings, head, router, compressors and indexer weights) and the token
// ids to run it on, for the official_ref emulator and test_official_model to compare.
//   make_official_model NAME DIR
// NAME picks a configuration chosen to exercise what tiny-a-q does not:
//   narrow: c = 24 (not a power of two: Hadamard zero-padding), nope dims 32 (< 64: a partial FP8
//           KV block), HCA ratio 16, a hash layer, K = 96 (one partial FP8 K block).
//   wide:   K = 160 and q_lora 136 (partial 128-blocks: several FP8 scale rows and columns),
//           window 56 + top-k 16 (key lists longer than one 64-key block of the sparse-attention
//           kernel), a prompt shorter than the window (the official prefill's −1 slots), softmax
//           routing, no YaRN.
//   long:   an HCA layer first (as V4-Pro's L0) and ratio 128 elsewhere, a prompt of 290 (two
//           HCA entries, 72 CSA entries from which the indexer keeps 8) decoded past the next
//           HCA boundary (384), three experts of eight per token, two hash layers.
//   compact: CSA on every layer with a window of 4, one mHC stream (hc_mult 1), a top-k of 96
//           above the entry count (the indexer keeps every entry), three hash layers, one output
//           group, one expert of four per token.
#include <cstdio>
#include <string>
#include <vector>

#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/weights.hpp"

namespace {

dsv4::ModelConfig narrow_config() {
  dsv4::ModelConfig c = dsv4::demo_model_config(4);
  c.vocab_size = 320;
  c.hidden_size = 96;
  c.compress_ratios = {0, 4, 16, 4};
  c.num_attention_heads = 4, c.head_dim = 48, c.qk_rope_head_dim = 16;
  c.q_lora_rank = 48, c.o_groups = 2, c.o_lora_rank = 24;
  c.index_n_heads = 4, c.index_head_dim = 24, c.index_topk = 4;
  c.sliding_window = 8;
  c.n_routed_experts = 4, c.num_experts_per_tok = 2, c.moe_intermediate_size = 64;
  c.num_hash_layers = 1;
  return c;
}

dsv4::ModelConfig wide_config() {
  dsv4::ModelConfig c = dsv4::demo_model_config(3);
  c.vocab_size = 300;
  c.hidden_size = 160;
  c.compress_ratios = {4, 16, 0};
  c.num_attention_heads = 8, c.head_dim = 40, c.qk_rope_head_dim = 8;
  c.q_lora_rank = 136, c.o_groups = 4, c.o_lora_rank = 20;
  c.index_n_heads = 4, c.index_head_dim = 32, c.index_topk = 16;
  c.sliding_window = 56;
  c.n_routed_experts = 6, c.num_experts_per_tok = 2, c.moe_intermediate_size = 96;
  c.num_hash_layers = 0;
  c.scoring_func = dsv4::ScoringFunc::kSoftmax;
  c.has_rope_scaling = false;
  return c;
}

dsv4::ModelConfig long_config() {
  dsv4::ModelConfig c = dsv4::demo_model_config(4);
  c.vocab_size = 256;
  c.hidden_size = 128;
  c.compress_ratios = {128, 4, 0, 128};
  c.num_attention_heads = 4, c.head_dim = 64, c.qk_rope_head_dim = 16;
  c.q_lora_rank = 64, c.o_groups = 2, c.o_lora_rank = 32;
  c.index_n_heads = 4, c.index_head_dim = 32, c.index_topk = 8;
  c.sliding_window = 16;
  c.n_routed_experts = 8, c.num_experts_per_tok = 3, c.moe_intermediate_size = 64;
  c.num_hash_layers = 2;
  return c;
}

dsv4::ModelConfig compact_config() {
  dsv4::ModelConfig c = dsv4::demo_model_config(4);
  c.vocab_size = 200;
  c.hidden_size = 64;
  c.compress_ratios = {4, 4, 4, 4};
  c.num_attention_heads = 2, c.head_dim = 64, c.qk_rope_head_dim = 16;
  c.q_lora_rank = 32, c.o_groups = 1, c.o_lora_rank = 16;
  c.index_n_heads = 2, c.index_head_dim = 32, c.index_topk = 96;
  c.sliding_window = 4;
  c.n_routed_experts = 4, c.num_experts_per_tok = 1, c.moe_intermediate_size = 32;
  c.num_hash_layers = 3;
  c.hc_mult = 1;
  return c;
}

struct Case {
  dsv4::ModelConfig config;
  int64_t n_ids;
  uint64_t seed;
};

bool find_case(const std::string& name, Case* out) {
  if (name == "narrow")
    *out = {narrow_config(), 60, 11};
  else if (name == "wide")
    *out = {wide_config(), 100, 12};
  else if (name == "long")
    *out = {long_config(), 400, 13};
  else if (name == "compact")
    *out = {compact_config(), 300, 14};
  else
    return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_official_model narrow|wide|long|compact DIR\n");
    return 2;
  }
  const std::string name = argv[1], dir = argv[2];
  Case chosen;
  if (!find_case(name, &chosen)) {
    std::fprintf(stderr, "unknown configuration %s\n", name.c_str());
    return 2;
  }
  const dsv4::ModelConfig& c = chosen.config;
  const int64_t n_ids = chosen.n_ids;
  const auto weights = dsv4::random_weights(c, chosen.seed, dsv4::RandomWeightFormats::official());
  if (dsv4::Status s = dsv4::write_checkpoint(dir, c, weights); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  std::vector<int32_t> ids(static_cast<size_t>(n_ids));
  uint64_t state = 0x243F6A8885A308D3ull;
  for (auto& id : ids) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    id = int32_t((state >> 33) % uint64_t(c.vocab_size));
  }
  const dsv4::SafetensorsWriteItem item{
      "input_ids", dsv4::DType::kI32, {n_ids}, std::as_bytes(std::span<const int32_t>(ids))};
  if (dsv4::Status s = dsv4::write_safetensors(dir + "/ids.safetensors", {item}); !s) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return 1;
  }
  return 0;
}
