// Loads a checkpoint through the C++ wrapper of the C ABI (dsv4/dsv4.hpp), generates a few
// tokens greedily and prints them. usage: example_cpp_generate MODEL_DIR [N]
// With a tokenizer in the model directory the text is printed too.
#include <cstdio>
#include <cstdlib>
#include <dsv4/dsv4.hpp>
#include <optional>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [N]\n", argv[0]);
    return 2;
  }
  const int n = argc > 2 ? std::atoi(argv[2]) : 8;
  try {
    const dsv4::api::Model model(argv[1]);
    dsv4::api::Session session(model);
    dsv4_sampler_params params = dsv4_sampler_default_params();
    params.temperature = 0.0f;  // greedy
    dsv4::api::Sampler sampler(params);
    std::vector<float> logits = session.append({1, 2, 3, 4});
    std::printf("tokens:");
    for (int i = 0; i < n; ++i) {
      const int32_t next = sampler.sample(logits);
      sampler.accept(next);
      std::printf(" %d", next);
      logits = session.append({next});
    }
    std::printf("\nposition %lld, %zu bytes of weights\n",
                static_cast<long long>(session.position()), model.resident_bytes());
  } catch (const dsv4::api::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
