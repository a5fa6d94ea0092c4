// Replays files through a fuzz entry point (the corpus check that CI runs; no fuzzing).
// usage: fuzz_replay safetensors|config FILE...
//        fuzz_replay session-mutations: valid saved sessions (one per SWA strategy), then every
//        single-byte corruption at a stride and every truncation at a stride of each, through
//        the session-file target.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "fuzz_targets.hpp"

namespace {
int replay_session_mutations() {
  int n = 0;
  auto run = [&n](const std::vector<uint8_t>& bytes) {
    // Exact-size heap copy, as below.
    uint8_t* copy = new uint8_t[bytes.size() + 1];
    if (!bytes.empty()) std::memcpy(copy, bytes.data(), bytes.size());
    dsv4::fuzz::session_file(copy, bytes.size());
    delete[] copy;
    ++n;
  };
  for (const std::vector<uint8_t>& seed : dsv4::fuzz::session_file_seeds()) {
    run(seed);
    for (size_t at = 0; at < seed.size(); at += 1 + at / 64) {
      std::vector<uint8_t> damaged = seed;
      damaged[at] ^= uint8_t(1u << (at % 8));
      run(damaged);
      run({seed.begin(), seed.begin() + std::ptrdiff_t(at)});
    }
    std::printf("replayed the mutations of a %zu-byte seed\n", seed.size());
  }
  std::printf("replayed %d session files\n", n);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "session-mutations") == 0)
    return replay_session_mutations();
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
