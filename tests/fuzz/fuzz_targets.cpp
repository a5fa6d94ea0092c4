#include "fuzz_targets.hpp"

#include <string_view>

#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/checkpoint_schema.hpp"

namespace dsv4::fuzz {

int safetensors_header(const uint8_t* data, size_t size) {
  auto parsed = parse_safetensors_header({reinterpret_cast<const std::byte*>(data), size});
  if (parsed.is_ok()) {
    // Every accepted tensor must lie inside the input: touch its first and last byte.
    volatile uint8_t sink = 0;
    for (const auto& t : parsed->tensors) {
      if (t.end > t.begin)
        sink = sink ^ data[parsed->data_offset + t.begin] ^ data[parsed->data_offset + t.end - 1];
    }
  }
  return 0;
}

int model_config(const uint8_t* data, size_t size) {
  auto parsed = parse_model_config(std::string_view(reinterpret_cast<const char*>(data), size));
  if (parsed.is_ok())
    (void)checkpoint_schema(parsed.value()).size();  // a valid config must yield a schema
  return 0;
}

}  // namespace dsv4::fuzz
