// Replays files through a fuzz entry point (the corpus check that CI runs; no fuzzing).
// usage: fuzz_replay safetensors|config FILE...
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "fuzz_targets.hpp"

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const bool st = std::strcmp(argv[1], "safetensors") == 0;
  for (int i = 2; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
    // Exact-size heap copy so AddressSanitizer catches any read past the input.
    uint8_t* copy = new uint8_t[bytes.size() + (bytes.empty() ? 1 : 0)];
    if (!bytes.empty()) std::memcpy(copy, bytes.data(), bytes.size());
    st ? dsv4::fuzz::safetensors_header(copy, bytes.size())
       : dsv4::fuzz::model_config(copy, bytes.size());
    delete[] copy;
  }
  std::printf("replayed %d files\n", argc - 2);
  return 0;
}
