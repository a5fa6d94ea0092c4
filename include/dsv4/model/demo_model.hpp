// The embedded default model of `dsv4 demo`: DeepSeek-V4's structure (mHC with 4 streams, SWA/CSA/
// HCA layers with V4's window 128 and ratios 4 / 128, lightning indexer, hash-routed first layers,
// sqrt-softplus MoE with a shared expert, YaRN on compressed layers) at scaled-down widths, with
// seeded random weights created in memory. Nothing is downloaded or read from disk.
#pragma once

#include <string>

#include "dsv4/formats/model_config.hpp"

namespace dsv4 {

// `n_layers` layers in the V4 pattern: the first two and the last layer window-only, the rest
// alternating CSA (m = 4) and HCA (m = 128).
ModelConfig demo_model_config(int64_t n_layers = 12);

// The published DeepSeek-V4 configurations (../shared/spec/v4-models.md), for planning and
// benchmarks: every width, ratio and count as in the released config.json files.
ModelConfig v4_flash_config();
ModelConfig v4_pro_config();
// A V4-Flash-shaped slice for benchmarks on a small machine: real widths, `n_layers` layers
// alternating CSA (m = 4) and HCA (m = 128) starting with CSA, vocabulary cut to 16384 so the head
// does not dominate, no hash layers. With official-format weights (FP8 attention and shared
// expert, FP4 routed experts) one layer is about 3.6 GB.
ModelConfig v4_flash_slice_config(int64_t n_layers = 2);
// "v4-flash", "v4-pro", "v4-flash-slice" (2 layers), or "demo"; false for an unknown name.
bool preset_config(const std::string& name, ModelConfig* out);

}  // namespace dsv4
