// libFuzzer / AFL++ target for saved-session files (Session::load).
#include "fuzz_targets.hpp"
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return dsv4::fuzz::session_file(data, size);
}
