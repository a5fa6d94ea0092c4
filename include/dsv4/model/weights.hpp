// Model weights in the forward-pass layout: fp32, row-major, linears as [out, in].
// Quantised checkpoints (FP8 128x128 block-scaled, FP4 e2m1 1x32 block-scaled) are dequantised at
// load time; native low-precision kernels come later.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"

namespace dsv4 {

struct Linear {
  int64_t out = 0, in = 0;
  std::vector<float> w;  // [out, in]
};

struct MhcWeights {
  std::vector<float> fn;     // [(2+n)·n, n·D] (head: [n, n·D])
  std::vector<float> base;   // [(2+n)·n] (head: [n])
  std::vector<float> scale;  // [3] (head: [1])
};

struct CompressorWeights {
  Linear wkv, wgate;        // [width, D]; width = out_dim (HCA) or 2·out_dim (CSA, overlapping)
  std::vector<float> ape;   // [m, width]
  std::vector<float> norm;  // [out_dim]
  int64_t out_dim = 0;
  bool overlap = false;
};

struct IndexerWeights {
  Linear wq_b;          // [H_I·c, q_lora_rank]
  Linear weights_proj;  // [H_I, D]
  CompressorWeights compressor;
};

struct ExpertWeights {
  Linear w1, w2, w3;  // w1, w3: [I, D]; w2: [D, I]
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;
  MhcWeights hc_attn, hc_ffn;
  Linear wq_a, wq_b, wkv, wo_a, wo_b;
  std::vector<float> q_norm, kv_norm, attn_sink;
  std::optional<CompressorWeights> compressor;  // m > 0
  std::optional<IndexerWeights> indexer;        // CSA
  Linear gate;                                  // [E, D]
  std::vector<float> gate_bias;                 // [E] (non-hash layers)
  std::vector<int32_t> tid2eid;                 // [vocab, k] (hash layers)
  std::vector<ExpertWeights> experts;
  std::optional<ExpertWeights> shared_expert;
};

struct ModelWeights {
  std::vector<float> embed;  // [V, D]
  std::vector<LayerWeights> layers;
  std::vector<float> norm;
  MhcWeights hc_head;
  Linear head;  // [V, D]
};

// Loads (and dequantises) every tensor of the schema; the checkpoint must already pass
// check_checkpoint. Errors name the tensor.
Result<ModelWeights> load_weights(const Checkpoint& checkpoint, const ModelConfig& config);

// Seeded random weights of the right shapes and sensible scales (for demos and tests that need a
// model of a shape no checkpoint has). Same seed, same weights.
ModelWeights random_weights(const ModelConfig& config, uint64_t seed);

// Dequantisation of one stored linear, exposed for tests.
// FP8: w = e4m3 × scale[o/128][i/128]. FP4: w = e2m1(nibble) × scale[o][i/32].
std::vector<float> dequantize_fp8_block(const ConstTensorView& weight,
                                        const ConstTensorView& scale);
std::vector<float> dequantize_fp4_block(const ConstTensorView& weight, const ConstTensorView& scale,
                                        int64_t in);

}  // namespace dsv4
