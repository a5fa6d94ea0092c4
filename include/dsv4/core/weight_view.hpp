// A weight matrix in its stored format: a non-owning view of [out, in] codes plus block scales.
//
// Weights stay in the format the checkpoint stores them in (no widening at load): the view points
// into the memory-mapped checkpoint, or into a buffer the model owns (random weights, converted
// F16). Kernels decode blocks on the fly; `at` and `decode_row` are the scalar reference decoders
// every kernel is tested against.
//
//   kF32   data: float    [out, in]
//   kBF16  data: uint16_t [out, in] (bf16 bits)
//   kFp8Block  data: uint8_t e4m3 codes [out, in];    scales: ue8m0 [ceil(out/128), ceil(in/128)]
//   kFp4Block  data: uint8_t [out, in/2], e2m1 pairs, even input in the low nibble;
//              scales: ue8m0 [out, ceil(in/32)]
#pragma once

#include <cstddef>
#include <cstdint>

#include "dsv4/core/dtype.hpp"
#include "dsv4/core/format_traits.hpp"

namespace dsv4 {

struct WeightView {
  WeightFormat format = WeightFormat::kF32;
  int64_t out = 0, in = 0;
  const void* data = nullptr;
  const uint8_t* scales = nullptr;  // ue8m0 codes (block-scaled formats only)
  int64_t scale_cols = 0;           // scales per scale row
  // Logical row o is stored row first_row + o: a view of rows [first_row, first_row + out) of a
  // larger matrix (grouped projections) shares its block scales without copying them.
  int64_t first_row = 0;
  // Bytes from one stored row to the next, and from one scale row to the next; 0 = packed
  // (row_bytes(), scale_cols). Set for rows interleaved with other data, e.g. FP4 indexer keys in
  // a KV-cache block, where each entry is its codes followed by its scales.
  int64_t row_stride = 0;
  int64_t scale_stride = 0;

  // Bytes of one stored row of codes.
  int64_t row_bytes() const noexcept {
    switch (format) {
      case WeightFormat::kF32:
        return in * 4;
      case WeightFormat::kBF16:
      case WeightFormat::kF16:
        return in * 2;
      case WeightFormat::kFp8Block:
        return in;
      case WeightFormat::kFp4Block:
        return in / 2;
    }
    return 0;
  }
  int64_t scale_rows() const noexcept {
    switch (format) {
      case WeightFormat::kFp8Block:
        return (out + 127) / 128;
      case WeightFormat::kFp4Block:
        return out;
      default:
        return 0;
    }
  }
  // Bytes of this view's rows and of the scale rows they use.
  size_t data_bytes() const noexcept { return size_t(out * row_bytes()); }
  size_t scale_bytes() const noexcept { return size_t(scale_rows() * scale_cols); }
  size_t bytes() const noexcept { return data_bytes() + scale_bytes(); }
  const uint8_t* row(int64_t o) const noexcept {
    return static_cast<const uint8_t*>(data) +
           (first_row + o) * (row_stride ? row_stride : row_bytes());
  }
  // The scale codes of stored scale row r (FP8: a row of 128×128 blocks; FP4: one matrix row).
  const uint8_t* scale_row(int64_t r) const noexcept {
    return scales + r * (scale_stride ? scale_stride : scale_cols);
  }

  // The dequantised value of element (o, i): code × block scale, exact in fp32.
  float at(int64_t o, int64_t i) const noexcept {
    const uint8_t* r = row(o);
    switch (format) {
      case WeightFormat::kF32: {
        float v;
        __builtin_memcpy(&v, r + i * 4, 4);
        return v;
      }
      case WeightFormat::kBF16: {
        uint16_t b;
        __builtin_memcpy(&b, r + i * 2, 2);
        return bf16_to_float(b);
      }
      case WeightFormat::kF16: {
        uint16_t b;
        __builtin_memcpy(&b, r + i * 2, 2);
        return fp16_to_float(b);
      }
      case WeightFormat::kFp8Block:
        return fp8_e4m3_to_float(r[i]) * ue8m0_to_float(scale_row((first_row + o) / 128)[i / 128]);
      case WeightFormat::kFp4Block:
        return fp4_e2m1_packed_at(r, size_t(i)) * ue8m0_to_float(scale_row(first_row + o)[i / 32]);
    }
    return 0.0f;
  }
  // dst[i] = at(o, i) for i in [0, in).
  // The switch sits outside the loop: packing a GEMM panel decodes whole rows.
  void decode_row(int64_t o, float* dst) const noexcept {
    const uint8_t* r = row(o);
    switch (format) {
      case WeightFormat::kF32:
        __builtin_memcpy(dst, r, size_t(in) * 4);
        return;
      case WeightFormat::kBF16:
        for (int64_t i = 0; i < in; ++i) {
          uint32_t bits = uint32_t(r[2 * i]) | uint32_t(r[2 * i + 1]) << 8;
          bits <<= 16;
          __builtin_memcpy(dst + i, &bits, 4);
        }
        return;
      case WeightFormat::kFp8Block:
        for (int64_t b = 0; b * 128 < in; ++b) {
          const float s = ue8m0_to_float(scale_row((first_row + o) / 128)[b]);
          const int64_t end = in < (b + 1) * 128 ? in : (b + 1) * 128;
          for (int64_t i = b * 128; i < end; ++i) dst[i] = fp8_e4m3_to_float(r[i]) * s;
        }
        return;
      case WeightFormat::kFp4Block:
        for (int64_t b = 0; b * 32 < in; ++b) {
          const float s = ue8m0_to_float(scale_row(first_row + o)[b]);
          const int64_t end = in < (b + 1) * 32 ? in : (b + 1) * 32;
          for (int64_t i = b * 32; i < end; ++i) dst[i] = fp4_e2m1_packed_at(r, size_t(i)) * s;
        }
        return;
      default:
        for (int64_t i = 0; i < in; ++i) dst[i] = at(o, i);
    }
  }
};

}  // namespace dsv4

namespace dsv4 {
// Rows [first, first + count) of `w` as a view of its own.
inline WeightView weight_rows(const WeightView& w, int64_t first, int64_t count) noexcept {
  WeightView v = w;
  v.first_row = w.first_row + first;
  v.out = count;
  return v;
}
// A plain fp32 [out, in] matrix as a view.
inline WeightView f32_weights(const float* data, int64_t out, int64_t in) noexcept {
  WeightView v;
  v.format = WeightFormat::kF32;
  v.out = out;
  v.in = in;
  v.data = data;
  return v;
}
}  // namespace dsv4
