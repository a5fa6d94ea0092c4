// Weight formats a linear layer may be stored in, one traits row each (ggml's type_traits idea):
// a new block-scaled layout is one more row here plus its decoder.
#pragma once

#include <cstdint>
#include <string_view>

namespace dsv4 {

enum class WeightFormat : uint8_t {
  kF32,       // plain fp32 [out, in]
  kBF16,      // plain bf16 [out, in]
  kF16,       // plain fp16 [out, in]
  kFp8Block,  // F8_E4M3 [out, in] + ue8m0 (or F32) scales per 128x128 block: [ceil(out/128),
              // ceil(in/128)]
  kFp4Block,  // e2m1 packed two per byte [out, in/2] (I8/U8, even index low nibble) + ue8m0 per 32
              // inputs: [out, ceil(in/32)] (OCP MXFP4)
};

struct WeightFormatTraits {
  std::string_view name;
  int64_t block_out;  // rows sharing one scale (1 = per row), 0 = unscaled
  int64_t block_in;   // inputs sharing one scale
  int bits_per_weight;
};

constexpr WeightFormatTraits weight_format_traits(WeightFormat f) noexcept {
  switch (f) {
    case WeightFormat::kF32:
      return {"f32", 0, 0, 32};
    case WeightFormat::kBF16:
      return {"bf16", 0, 0, 16};
    case WeightFormat::kF16:
      return {"f16", 0, 0, 16};
    case WeightFormat::kFp8Block:
      return {"fp8-e4m3-b128", 128, 128, 8};
    case WeightFormat::kFp4Block:
      return {"fp4-e2m1-b32", 1, 32, 4};
  }
  return {"?", 0, 0, 0};
}

// FP8 and FP4: codes with a power-of-two scale per block (block_in wide).
constexpr bool is_block_scaled(WeightFormat f) noexcept {
  return weight_format_traits(f).block_out != 0;
}

}  // namespace dsv4
