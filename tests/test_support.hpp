// Helpers shared by the tests: golden paths, temporary folders, and a small safetensors writer
// (an independent writer, so reader tests do not check the reader against itself).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/core/dtype.hpp"
#include "dsv4/core/tensor_view.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/model.hpp"

namespace dsv4::test {

inline std::filesystem::path golden_dir(const std::string& name) {
  return std::filesystem::path(DSV4_GOLDEN_DIR) / name;
}
// A golden model loaded with `options` (throws, which fails the test, when it does not load).
inline std::shared_ptr<const dsv4::Model> golden_model(const std::string& name,
                                                       const dsv4::ModelLoadOptions& options = {}) {
  auto model = dsv4::Model::load(golden_dir(name).string(), options);
  if (!model) throw std::runtime_error(name + ": " + model.status().to_string());
  return model.value();
}
inline std::shared_ptr<const dsv4::Model> golden_model(const std::string& name,
                                                       dsv4::Numerics numerics) {
  dsv4::ModelLoadOptions options;
  options.numerics = numerics;
  return golden_model(name, options);
}

// True in CI's sanitizer pass (.ci/run sets DSV4_SANITIZED_RUN): the heaviest equivalence tests,
// which the plain pass runs in full, then take a representative subset of their cases there
// (sanitizers look for memory and UB errors in the code paths, which the subset still covers).
inline bool sanitized_run() { return std::getenv("DSV4_SANITIZED_RUN") != nullptr; }

inline std::filesystem::path source_dir() { return std::filesystem::path(DSV4_SOURCE_DIR); }

// A fresh, empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("dsv4-" + tag + "-" + std::to_string(rd()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct RawTensor {
  std::string name;
  std::string dtype;  // safetensors spelling
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

inline RawTensor f32_tensor(const std::string& name, std::vector<int64_t> shape,
                            const std::vector<float>& values) {
  RawTensor t{name, "F32", std::move(shape), std::vector<uint8_t>(values.size() * 4)};
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

inline std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

inline void write_safetensors(const std::filesystem::path& path,
                              const std::vector<RawTensor>& tensors) {
  std::string header = "{";
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const RawTensor& t = tensors[i];
    if (i) header += ",";
    header += "\"" + json_escape(t.name) + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d)
      header += (d ? "," : "") + std::to_string(t.shape[d]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
  out.write(header.data(), std::streamsize(header.size()));
  for (const RawTensor& t : tensors)
    out.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A golden run: ids, then logits of the prefill and of the teacher-forced decode.
struct Golden {
  std::vector<int32_t> input_ids;
  std::vector<float> prefill_logits, decode_logits, hidden_states, final_hidden;
  int64_t prompt_len = 0;
};

inline std::vector<float> read_f32(const dsv4::Checkpoint& file, const std::string& name) {
  const auto entry = file.find(name);
  if (!entry.info) return {};
  const auto view = file.view(entry);
  std::vector<float> out(size_t(view.numel()));
  dsv4::decode_to_float(view, out);
  return out;
}

inline Golden load_golden(const std::string& name) {
  auto file =
      dsv4::Checkpoint::open((dsv4::test::golden_dir(name) / "golden.safetensors").string());
  if (!file.is_ok()) throw std::runtime_error("cannot open golden " + name);
  Golden g;
  for (float id : read_f32(file.value(), "input_ids")) g.input_ids.push_back(int32_t(id));
  g.prefill_logits = read_f32(file.value(), "prefill_logits");
  g.decode_logits = read_f32(file.value(), "decode_logits");
  g.hidden_states = read_f32(file.value(), "hidden_states");
  g.final_hidden = read_f32(file.value(), "final_hidden");
  g.prompt_len = int64_t(g.prefill_logits.size() / 256);
  return g;
}

// Largest |a − b|; a NaN or infinity on either side counts as an infinite difference, so it can
// never pass a bound.
inline float max_abs_diff(const float* a, const float* b, size_t n) {
  float worst = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  return worst;
}

// Max and mean |a − b| of two logit tables (both infinite when a value is not finite).
struct Deviation {
  float max = 0.0f;
  double mean = 0.0;
};
inline Deviation deviation(const float* a, const float* b, size_t n) {
  Deviation d;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return {INFINITY, INFINITY};
    const float diff = std::fabs(a[i] - b[i]);
    d.max = std::max(d.max, diff);
    sum += diff;
  }
  d.mean = n ? sum / double(n) : 0.0;
  return d;
}

}  // namespace dsv4::test
