// What one token costs: the bytes a decode step reads (the basis of every bandwidth roofline in
// `dsv4 bench` and the benchmarks) and the multiply-adds of a prefill token's linears.
#pragma once

#include <cstdint>

#include "dsv4/formats/model_config.hpp"
#include "dsv4/model/kv_cache.hpp"
#include "dsv4/model/weights.hpp"

namespace dsv4 {

struct DecodeTraffic {
  double weight_bytes = 0.0;  // every matrix a token reads, in its stored format (k experts)
  double kv_bytes = 0.0;      // cache entries read: window, HCA entries, CSA indexer keys + top-k
  double total() const noexcept { return weight_bytes + kv_bytes; }
};

// Bytes one decode step reads at `context` tokens, with the cache stored in `kv_format` (each
// entry at its codec's size: 2048 B per V4 entry in f32, 584 B packed).
DecodeTraffic decode_traffic(const ModelConfig& config, const ModelWeights& weights,
                             int64_t context, KvFormat kv_format = KvFormat::kF32);

// Floating-point operations (2 per multiply-add) of one token through every linear it uses.
double linear_flops_per_token(const ModelConfig& config, const ModelWeights& weights);

}  // namespace dsv4
