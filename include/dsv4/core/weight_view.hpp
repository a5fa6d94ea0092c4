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
//
// The codes are laid out in one of three ways (the scales always as above):
//   kRows   row after row, as the checkpoint stores them.
//   kTiled  the stored rows in groups of kTileRows (the last group padded with zero rows), and in
//           each group the rows' 64-byte units interleaved: unit u of row r of group g lies at
//           data + g·kTileRows·row_bytes + u·kTileRows·64 + r·64. Rows of a multiple of 64 bytes
//           only. A GEMV reading a group's rows together then reads one sequential stream instead
//           of kTileRows streams 4 KiB or more apart, which the hardware prefetchers follow far
//           better (the CPU backend asks for it: see Backend::gemm_weight_layout). An FP4
//           unit (128 weights, four 32-blocks b of 16 bytes d) is also transposed: byte 16b + d
//           lies at 4d + b, so 32-bit word d holds byte d of all four blocks and one shift brings
//           any block's low or high nibbles to the bottom of every word (the AVX-512 kernel then
//           decodes 16 weights with a shift and a table permute, without widening the bytes).
//   kRowUnits  row after row as kRows, each row's 64-byte units in the kernels' order as kTiled
//           (FP4 units transposed; the other formats' bytes are kRows' own). A GEMV reading a
//           tile of rows then reads one stream per row, which some cores' prefetchers follow
//           better than one interleaved stream (the CPU backend asks for it for FP4 on Intel's
//           cores: see gemm_weight_layout). Rows of a multiple of 64 bytes only.
// stored_row(o).at(b) finds byte b of row o in any layout.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dsv4/core/dtype.hpp"
#include "dsv4/core/format_traits.hpp"

namespace dsv4 {

enum class WeightLayout : uint8_t { kRows, kTiled, kRowUnits };

// Where byte q of a tiled FP4 unit lies in it (the unit transposed as 4 × 16 bytes).
inline constexpr int64_t fp4_tiled_unit_offset(int64_t q) noexcept { return q % 16 * 4 + q / 16; }

// The bytes of one stored row: byte b at base + (b / 64)·unit_stride + b % 64 (unit_stride is 64
// for rows as stored, so the row is contiguous; kTileRows·64 for tiled ones), the offset inside
// the unit transposed for tiled FP4 (fp4_tiled_unit_offset).
struct StoredRow {
  const uint8_t* base = nullptr;
  int64_t unit_stride = 64;
  bool transposed = false;
  const uint8_t* at(int64_t byte) const noexcept {
    return base + (byte >> 6) * unit_stride +
           (transposed ? fp4_tiled_unit_offset(byte & 63) : (byte & 63));
  }
};

struct WeightView {
  static constexpr int64_t kTileRows = 4;
  static constexpr int64_t kTileUnit = 64;

  WeightFormat format = WeightFormat::kF32;
  WeightLayout layout = WeightLayout::kRows;
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
  bool tiled() const noexcept { return layout == WeightLayout::kTiled; }
  // Whether the rows are in 64-byte units of the kernels' order (kTiled, kRowUnits), not as the
  // checkpoint stores them.
  bool in_units() const noexcept { return layout != WeightLayout::kRows; }
  // Rows whose units are interleaved: kTileRows when tiled, 1 otherwise.
  int64_t group_rows() const noexcept { return tiled() ? kTileRows : 1; }
  // Whether the tiled and row-unit layouts can hold this matrix (whole 64-byte units, rows
  // packed).
  bool tileable() const noexcept {
    return row_bytes() > 0 && row_bytes() % kTileUnit == 0 && row_stride == 0;
  }
  // Rows as stored: a tiled matrix's are padded to whole groups.
  int64_t stored_rows() const noexcept {
    return tiled() ? (out + kTileRows - 1) / kTileRows * kTileRows : out;
  }
  // Bytes of this view's rows (as stored) and of the scale rows they use.
  size_t data_bytes() const noexcept { return size_t(stored_rows() * row_bytes()); }
  size_t scale_bytes() const noexcept { return size_t(scale_rows() * scale_cols); }
  size_t bytes() const noexcept { return data_bytes() + scale_bytes(); }
  // Row o's codes, contiguous: the kRows layout only (stored_row serves both).
  // Always inlined (with stored_row): GEMV tiles look up 4-8 rows each, and as calls these
  // lookups had taken 2% of a V4-Flash-slice decode step.
  [[gnu::always_inline]] const uint8_t* row(int64_t o) const noexcept {
    return static_cast<const uint8_t*>(data) +
           (first_row + o) * (row_stride ? row_stride : row_bytes());
  }
  [[gnu::always_inline]] StoredRow stored_row(int64_t o) const noexcept {
    if (!in_units()) return {row(o), kTileUnit};
    const int64_t s = first_row + o, group = group_rows();
    return {
        static_cast<const uint8_t*>(data) + s / group * group * row_bytes() + s % group * kTileUnit,
        group * kTileUnit, format == WeightFormat::kFp4Block};
  }
  // Row o's codes in the kRows order, whatever the layout.
  void copy_row_codes(int64_t o, uint8_t* dst) const noexcept {
    const StoredRow r = stored_row(o);
    const int64_t n = row_bytes();
    if (r.transposed) {
      for (int64_t b = 0; b < n; ++b) dst[b] = *r.at(b);
      return;
    }
    for (int64_t b = 0; b < n; b += kTileUnit)
      __builtin_memcpy(dst + b, r.at(b), size_t(n - b < kTileUnit ? n - b : kTileUnit));
  }
  // The scale codes of stored scale row r (FP8: a row of 128×128 blocks; FP4: one matrix row).
  const uint8_t* scale_row(int64_t r) const noexcept {
    return scales + r * (scale_stride ? scale_stride : scale_cols);
  }

  // The dequantised value of element (o, i): code × block scale, exact in fp32.
  float at(int64_t o, int64_t i) const noexcept {
    const StoredRow r = stored_row(o);
    switch (format) {
      case WeightFormat::kF32: {
        float v;
        __builtin_memcpy(&v, r.at(i * 4), 4);
        return v;
      }
      case WeightFormat::kBF16: {
        uint16_t b;
        __builtin_memcpy(&b, r.at(i * 2), 2);
        return bf16_to_float(b);
      }
      case WeightFormat::kF16: {
        uint16_t b;
        __builtin_memcpy(&b, r.at(i * 2), 2);
        return fp16_to_float(b);
      }
      case WeightFormat::kFp8Block:
        return fp8_e4m3_to_float(*r.at(i)) *
               ue8m0_to_float(scale_row((first_row + o) / 128)[i / 128]);
      case WeightFormat::kFp4Block:
        return fp4_e2m1_packed_at(r.at(i / 2), size_t(i & 1)) *
               ue8m0_to_float(scale_row(first_row + o)[i / 32]);
    }
    return 0.0f;
  }
  // dst[i] = at(o, i) for i in [0, in).
  // The switch sits outside the loop: packing a GEMM panel decodes whole rows.
  void decode_row(int64_t o, float* dst) const noexcept {
    if (in_units()) {  // (the kernels read such rows unit by unit; this is the reference)
      for (int64_t i = 0; i < in; ++i) dst[i] = at(o, i);
      return;
    }
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
// (A tiled matrix's groups stay where they are: first need not be a multiple of kTileRows.)
inline WeightView weight_rows(const WeightView& w, int64_t first, int64_t count) noexcept {
  WeightView v = w;
  v.first_row = w.first_row + first;
  v.out = count;
  return v;
}
// Bytes the codes of w take in `layout` (rows padded to whole groups when tiled).
inline size_t weight_data_bytes(const WeightView& w, WeightLayout layout) noexcept {
  WeightView v = w;
  v.layout = layout;
  return v.data_bytes();
}
// w's codes (any layout, a whole matrix: first_row 0) written to dst in `layout`, kTiled or
// kRowUnits (weight_data_bytes(w, layout) bytes, the padding rows zero); returns the view of
// them, sharing w's scales. w must be tileable().
inline WeightView units_weights(const WeightView& w, WeightLayout layout, uint8_t* dst) noexcept {
  WeightView t = w;
  t.layout = layout;
  t.data = dst;
  t.first_row = 0;
  constexpr int64_t kUnit = WeightView::kTileUnit;
  const int64_t units = w.row_bytes() / kUnit, group = t.group_rows();
  // Group by group, writing each group's bytes in order (its rows' units in turn).
  for (int64_t g0 = 0; g0 < t.stored_rows(); g0 += group) {
    StoredRow from[WeightView::kTileRows];
    for (int64_t r = 0; r < group && g0 + r < w.out; ++r) from[r] = w.stored_row(g0 + r);
    uint8_t* out = dst + g0 * w.row_bytes();
    for (int64_t u = 0; u < units; ++u)
      for (int64_t r = 0; r < group; ++r, out += kUnit) {
        if (g0 + r >= w.out) {
          __builtin_memset(out, 0, kUnit);
        } else if (w.format == WeightFormat::kFp4Block) {
          for (int64_t q = 0; q < kUnit; ++q)
            out[fp4_tiled_unit_offset(q)] = *from[r].at(u * kUnit + q);
        } else {
          __builtin_memcpy(out, from[r].at(u * kUnit), kUnit);
        }
      }
  }
  return t;
}

// The inverse of units_weights: w's codes (any layout, a whole matrix) written to dst in the
// checkpoint's row order (out · row_bytes bytes); returns the view of them, sharing w's scales.
inline WeightView untile_weights(const WeightView& w, uint8_t* dst) noexcept {
  WeightView rows = w;
  rows.layout = WeightLayout::kRows;
  rows.data = dst;
  rows.first_row = 0;
  for (int64_t o = 0; o < w.out; ++o) w.copy_row_codes(o, dst + o * w.row_bytes());
  return rows;
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
