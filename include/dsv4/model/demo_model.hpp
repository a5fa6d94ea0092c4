// The embedded default model of `dsv4 demo`: DeepSeek-V4's structure (mHC with 4 streams, SWA/CSA/
// HCA layers with V4's window 128 and ratios 4 / 128, lightning indexer, hash-routed first layers,
// sqrt-softplus MoE with a shared expert, YaRN on compressed layers) at scaled-down widths, with
// seeded random weights created in memory. Nothing is downloaded or read from disk.
#pragma once

#include "dsv4/formats/model_config.hpp"

namespace dsv4 {

// `n_layers` layers in the V4 pattern: the first two and the last layer window-only, the rest
// alternating CSA (m = 4) and HCA (m = 128).
ModelConfig demo_model_config(int64_t n_layers = 12);

}  // namespace dsv4
