// The fuzz entry points, shared by the libFuzzer/AFL++ builds and by the corpus replay test.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsv4::fuzz {
int safetensors_header(const uint8_t* data, size_t size);
int model_config(const uint8_t* data, size_t size);
}  // namespace dsv4::fuzz
