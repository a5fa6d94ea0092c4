#include "dsv4/core/tensor_view.hpp"

#include <cstring>

namespace dsv4 {
namespace {
template <class T>
T load_unaligned(const std::byte* p) noexcept {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}
}  // namespace

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

float element_as_float(const ConstTensorView& v, int64_t i) noexcept {
  const std::byte* p = v.data;
  switch (v.dtype) {
    case DType::kF64:
      return float(load_unaligned<double>(p + i * 8));
    case DType::kF32:
      return load_unaligned<float>(p + i * 4);
    case DType::kF16:
      return fp16_to_float(load_unaligned<uint16_t>(p + i * 2));
    case DType::kBF16:
      return bf16_to_float(load_unaligned<uint16_t>(p + i * 2));
    case DType::kF8E4M3:
      return fp8_e4m3_to_float(uint8_t(p[i]));
    case DType::kF8E5M2:
      return fp8_e5m2_to_float(uint8_t(p[i]));
    case DType::kF8E8M0:
      return ue8m0_to_float(uint8_t(p[i]));
    case DType::kF4E2M1:
      return fp4_e2m1_packed_at(reinterpret_cast<const uint8_t*>(p), size_t(i));
    case DType::kI64:
      return float(load_unaligned<int64_t>(p + i * 8));
    case DType::kI32:
      return float(load_unaligned<int32_t>(p + i * 4));
    case DType::kI16:
      return float(load_unaligned<int16_t>(p + i * 2));
    case DType::kI8:
      return float(int8_t(p[i]));
    case DType::kU64:
      return float(load_unaligned<uint64_t>(p + i * 8));
    case DType::kU32:
      return float(load_unaligned<uint32_t>(p + i * 4));
    case DType::kU16:
      return float(load_unaligned<uint16_t>(p + i * 2));
    case DType::kU8:
    case DType::kBool:
      return float(uint8_t(p[i]));
  }
  return 0.0f;
}

void decode_to_float(const ConstTensorView& v, std::span<float> dst) noexcept {
  const int64_t n = int64_t(dst.size());
  if (n == 0) return;
  if (v.dtype == DType::kF32) {
    std::memcpy(dst.data(), v.data, size_t(n) * sizeof(float));
    return;
  }
  if (v.dtype == DType::kBF16) {
    for (int64_t i = 0; i < n; ++i)
      dst[size_t(i)] = bf16_to_float(load_unaligned<uint16_t>(v.data + i * 2));
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[size_t(i)] = element_as_float(v, i);
}

}  // namespace dsv4
