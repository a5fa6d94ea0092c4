// The fuzz entry points, shared by the libFuzzer/AFL++ builds and by the corpus replay test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv4::fuzz {
int safetensors_header(const uint8_t* data, size_t size);
int model_config(const uint8_t* data, size_t size);
// Loads `data` as a saved session of a small fixed model and, when accepted, appends a token.
int session_file(const uint8_t* data, size_t size);
// Valid saved sessions of that model, one per SWA strategy (full, checkpoint, none): the seeds
// the replay mutates.
std::vector<std::vector<uint8_t>> session_file_seeds();
}  // namespace dsv4::fuzz
