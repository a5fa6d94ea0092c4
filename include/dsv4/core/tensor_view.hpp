// Non-owning, contiguous (row-major) views of typed memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dsv4/core/dtype.hpp"

namespace dsv4 {

using Shape = std::vector<int64_t>;

inline int64_t shape_numel(const Shape& shape) noexcept {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(const Shape& shape);

// Bytes occupied by `numel` elements of `t`, or -1 when F4 data would need half a byte.
inline int64_t dtype_bytes_for(DType t, int64_t numel) noexcept {
  const int64_t bits = numel * dtype_bits(t);
  return bits % 8 == 0 ? bits / 8 : -1;
}

// A read-only view of a tensor stored in a checkpoint (or anywhere else): no alignment is
// promised, so readers copy elements out with memcpy or the dtype decoders.
struct ConstTensorView {
  const std::byte* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;

  int64_t numel() const noexcept { return shape_numel(shape); }
  size_t byte_size() const noexcept { return size_t(dtype_bytes_for(dtype, numel())); }
  int rank() const noexcept { return int(shape.size()); }
  std::span<const std::byte> bytes() const noexcept { return {data, byte_size()}; }
};

// A mutable fp32 view with row-major shape; operators work on these.
struct TensorView {
  float* data = nullptr;
  Shape shape;

  int64_t numel() const noexcept { return shape_numel(shape); }
};

// Decodes element `i` of a floating or integer tensor to float (F4 counts packed elements).
float element_as_float(const ConstTensorView& view, int64_t i) noexcept;

// Decodes a whole tensor into `dst` (dst.size() must equal view.numel()).
void decode_to_float(const ConstTensorView& view, std::span<float> dst) noexcept;

}  // namespace dsv4
