#include "dsv4/core/dtype.hpp"

namespace dsv4 {
namespace {
struct DTypeName {
  DType type;
  std::string_view name;
};
constexpr DTypeName kDTypeNames[] = {
    {DType::kF64, "F64"},        {DType::kF32, "F32"},        {DType::kF16, "F16"},
    {DType::kBF16, "BF16"},      {DType::kF8E4M3, "F8_E4M3"}, {DType::kF8E5M2, "F8_E5M2"},
    {DType::kF8E8M0, "F8_E8M0"}, {DType::kF4E2M1, "F4"},      {DType::kI64, "I64"},
    {DType::kI32, "I32"},        {DType::kI16, "I16"},        {DType::kI8, "I8"},
    {DType::kU64, "U64"},        {DType::kU32, "U32"},        {DType::kU16, "U16"},
    {DType::kU8, "U8"},          {DType::kBool, "BOOL"},
};
}  // namespace

std::string_view dtype_name(DType t) noexcept {
  for (const auto& entry : kDTypeNames)
    if (entry.type == t) return entry.name;
  return "?";
}

bool parse_dtype(std::string_view name, DType* out) noexcept {
  for (const auto& entry : kDTypeNames) {
    if (entry.name == name) {
      *out = entry.type;
      return true;
    }
  }
  return false;
}

}  // namespace dsv4
