// libFuzzer / AFL++ target for the config.json parser and validator.
#include "fuzz_targets.hpp"
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return dsv4::fuzz::model_config(data, size);
}
