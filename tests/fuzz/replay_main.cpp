// Replays files through a fuzz entry point (the corpus check that CI runs; no fuzzing).
// usage: fuzz_replay safetensors|config|tokenizer|chat-render|chat-parse FILE...
//        fuzz_replay http-body TOKENIZER FILE...
//        fuzz_replay write-session-seeds DIR
//        fuzz_replay session-mutations: valid saved sessions (one per SWA strategy), then every
//        single-byte corruption at a stride and every truncation at a stride of each, through
//        the session-file target.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
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

// Writes the valid saved sessions the session target starts from into DIR (for scripts/fuzz).
int write_session_seeds(const char* dir) {
  int n = 0;
  for (const std::vector<uint8_t>& seed : dsv4::fuzz::session_file_seeds()) {
    std::ofstream out(std::string(dir) + "/seed" + std::to_string(n++), std::ios::binary);
    out.write(reinterpret_cast<const char*>(seed.data()), std::streamsize(seed.size()));
  }
  std::printf("wrote %d session seeds\n", n);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "session-mutations") == 0)
    return replay_session_mutations();
  if (argc == 3 && std::strcmp(argv[1], "write-session-seeds") == 0)
    return write_session_seeds(argv[2]);
  if (argc < 3) return 2;
  const std::string target = argv[1];
  int first = 2;
  int (*run)(const uint8_t*, size_t) = nullptr;
  if (target == "safetensors") run = dsv4::fuzz::safetensors_header;
  if (target == "config") run = dsv4::fuzz::model_config;
  if (target == "tokenizer") run = dsv4::fuzz::tokenizer_json;
  if (target == "chat-render") run = dsv4::fuzz::chat_render;
  if (target == "chat-parse") run = dsv4::fuzz::chat_parse;
  if (target == "http-body") {
    run = dsv4::fuzz::http_body;
    dsv4::fuzz::set_http_body_tokenizer(argv[2]);
    first = 3;
  }
  if (!run) {
    std::fprintf(stderr, "fuzz_replay: unknown target %s\n", argv[1]);
    return 2;
  }
  for (int i = first; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
    // Exact-size heap copy so AddressSanitizer catches any read past the input.
    uint8_t* copy = new uint8_t[bytes.size() + (bytes.empty() ? 1 : 0)];
    if (!bytes.empty()) std::memcpy(copy, bytes.data(), bytes.size());
    run(copy, bytes.size());
    delete[] copy;
  }
  std::printf("replayed %d files\n", argc - first);
  return 0;
}
