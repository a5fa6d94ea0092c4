// libFuzzer / AFL++ target for the safetensors header parser.
#include "fuzz_targets.hpp"
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return dsv4::fuzz::safetensors_header(data, size);
}
