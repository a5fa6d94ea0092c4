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
// A tokenizer.json; when accepted, a fixed text is encoded and decoded with it.
int tokenizer_json(const uint8_t* data, size_t size);
// Chat messages JSON through the V4 chat encoding, in chat and thinking mode.
int chat_render(const uint8_t* data, size_t size);
// Model output through the completion parser: the first byte picks the mode (T: thinking).
int chat_parse(const uint8_t* data, size_t size);
// An HTTP request body through dsv4 serve's request checks (chat and text completions), with
// the V4 tokenizer of set_http_body_tokenizer (or $DSV4_FUZZ_TOKENIZER, or the build's).
int http_body(const uint8_t* data, size_t size);
void set_http_body_tokenizer(const char* path);
}  // namespace dsv4::fuzz
