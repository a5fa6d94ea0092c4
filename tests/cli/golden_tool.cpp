// Test helper for the CLI tests: prints a golden's input ids, or compares an eval output with it.
// usage: golden_tool tokens GOLDEN_DIR | golden_tool compare OUT.safetensors
// GOLDEN_DIR|REF.safetensors
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dsv4/formats/safetensors.hpp"

namespace {
std::vector<float> read(const dsv4::Checkpoint& file, const char* name, dsv4::Shape* shape) {
  const auto entry = file.find(name);
  if (!entry.info) return {};
  const auto view = file.view(entry);
  if (shape) *shape = view.shape;
  std::vector<float> out(static_cast<size_t>(view.numel()));
  dsv4::decode_to_float(view, out);
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && !std::strcmp(argv[1], "tokens")) {
    auto golden = dsv4::Checkpoint::open(std::string(argv[2]) + "/golden.safetensors");
    if (!golden) return 1;
    for (float id : read(golden.value(), "input_ids", nullptr)) std::printf("%d\n", int(id));
    return 0;
  }
  // compare-decode: only decode_logits (a resumed eval has no prefill rows before its start).
  const bool decode_only = argc == 4 && !std::strcmp(argv[1], "compare-decode");
  if (argc == 4 && (decode_only || !std::strcmp(argv[1], "compare"))) {
    auto out = dsv4::Checkpoint::open(argv[2]);
    const std::string ref = argv[3];
    const bool is_file = ref.size() > 12 && ref.substr(ref.size() - 12) == ".safetensors";
    auto golden = dsv4::Checkpoint::open(is_file ? ref : ref + "/golden.safetensors");
    if (!out || !golden) return 1;
    for (const char* name : {"prefill_logits", "decode_logits"}) {
      if (decode_only && std::strcmp(name, "decode_logits") != 0) continue;
      dsv4::Shape a_shape, b_shape;
      const auto a = read(out.value(), name, &a_shape), b = read(golden.value(), name, &b_shape);
      if (a.empty() || a_shape != b_shape) {
        std::printf("%s: shape %s, expected %s\n", name, dsv4::shape_to_string(a_shape).c_str(),
                    dsv4::shape_to_string(b_shape).c_str());
        return 1;
      }
      float worst = 0.0f;
      for (size_t i = 0; i < a.size(); ++i)
        worst = std::isfinite(a[i]) ? std::max(worst, std::fabs(a[i] - b[i])) : INFINITY;
      std::printf("%s %s: max |diff| = %g\n", name, dsv4::shape_to_string(a_shape).c_str(), worst);
      if (!(worst < 1e-3f)) return 1;
    }
    return 0;
  }
  return 2;
}
