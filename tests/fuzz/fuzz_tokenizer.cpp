// libFuzzer / AFL++ target: see dsv4::fuzz::tokenizer_json (fuzz_targets.hpp).
#include "fuzz_targets.hpp"
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return dsv4::fuzz::tokenizer_json(data, size);
}
