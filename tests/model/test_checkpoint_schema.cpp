#include <catch2/catch.hpp>
#include <set>
#include <variant>

#include "dsv4/formats/model_config.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/checkpoint_schema.hpp"
#include "dsv4/model/model_summary.hpp"
#include "dsv4/model/weights.hpp"
#include "test_support.hpp"

using dsv4::StatusCode;

namespace {

// Copies a golden checkpoint into `dir`, letting `edit` drop or alter tensors on the way.
template <class Edit>
void copy_checkpoint(const std::string& golden, const std::filesystem::path& dir, Edit&& edit) {
  auto ckpt = dsv4::Checkpoint::open(dsv4::test::golden_dir(golden).string());
  REQUIRE(ckpt.is_ok());
  std::vector<dsv4::test::RawTensor> tensors;
  for (const std::string& name : ckpt->names()) {
    const auto view = ckpt->view(ckpt->find(name));
    const auto* p = reinterpret_cast<const uint8_t*>(view.data);
    dsv4::test::RawTensor t{name, std::string(dsv4::dtype_name(view.dtype)), view.shape,
                            std::vector<uint8_t>(p, p + view.byte_size())};
    if (edit(t)) tensors.push_back(std::move(t));
  }
  dsv4::test::write_safetensors(dir / "model.safetensors", tensors);
  std::filesystem::copy_file(dsv4::test::golden_dir(golden) / "config.json", dir / "config.json");
}

dsv4::Status check_dir(const std::filesystem::path& dir) {
  auto config = dsv4::load_model_config(dir.string());
  REQUIRE(config.is_ok());
  auto ckpt = dsv4::Checkpoint::open(dir.string());
  REQUIRE(ckpt.is_ok());
  return dsv4::check_checkpoint(ckpt.value(), config.value());
}

}  // namespace

TEST_CASE("schema: both goldens satisfy the schema with the expected formats", "[schema]") {
  for (const char* name : {"tiny-a", "tiny-a-q"}) {
    auto config = dsv4::load_model_config(dsv4::test::golden_dir(name).string());
    auto ckpt = dsv4::Checkpoint::open(dsv4::test::golden_dir(name).string());
    REQUIRE(ckpt.is_ok());
    auto summary = dsv4::summarize_model(config.value(), ckpt.value());
    REQUIRE(summary.is_ok());
    const bool quantised = std::string(name) == "tiny-a-q";
    REQUIRE(summary->layers.size() == 6);
    CHECK(summary->layers[1].attention_format ==
          (quantised ? dsv4::WeightFormat::kFp8Block : dsv4::WeightFormat::kBF16));
    CHECK(summary->layers[1].expert_format ==
          (quantised ? dsv4::WeightFormat::kFp4Block : dsv4::WeightFormat::kBF16));
    CHECK(summary->n_params_total == 569321);
    CHECK(summary->n_unused_tensors == 0);
    CHECK(summary->layers[0].hash_routing);
    CHECK(summary->layers[2].compress_ratio == 128);
  }
}

TEST_CASE("schema: a missing tensor is named", "[schema]") {
  dsv4::test::TempDir dir("schema-missing");
  copy_checkpoint("tiny-a", dir.path(),
                  [](const auto& t) { return t.name != "layers.3.attn.indexer.wq_b.weight"; });
  const auto status = check_dir(dir.path());
  CHECK(status.code() == StatusCode::kModelMismatch);
  CHECK(status.message().find("layers.3.attn.indexer.wq_b.weight") != std::string::npos);
  CHECK(status.message().find("missing") != std::string::npos);
}

TEST_CASE("schema: a wrong shape is named with expected and found", "[schema]") {
  dsv4::test::TempDir dir("schema-shape");
  copy_checkpoint("tiny-a", dir.path(), [](auto& t) {
    if (t.name == "layers.2.attn.compressor.ape")
      t.shape = {64, 64};  // should be [128, 32]; same byte size
    return true;
  });
  const auto status = check_dir(dir.path());
  CHECK(status.code() == StatusCode::kModelMismatch);
  CHECK(status.message().find("layers.2.attn.compressor.ape") != std::string::npos);
  CHECK(status.message().find("expected") != std::string::npos);
}

TEST_CASE("schema: a wrong dtype is named", "[schema]") {
  dsv4::test::TempDir dir("schema-dtype");
  copy_checkpoint("tiny-a", dir.path(), [](auto& t) {
    if (t.name == "layers.0.ffn.gate.tid2eid") t.dtype = "F32";  // same byte size, wrong type
    return true;
  });
  const auto status = check_dir(dir.path());
  CHECK(status.code() == StatusCode::kModelMismatch);
  CHECK(status.message().find("tid2eid") != std::string::npos);
  CHECK(status.message().find("I32") != std::string::npos);
}

TEST_CASE("schema: an FP8 weight without its scale is rejected", "[schema]") {
  dsv4::test::TempDir dir("schema-scale");
  copy_checkpoint("tiny-a-q", dir.path(),
                  [](const auto& t) { return t.name != "layers.4.attn.wo_b.scale"; });
  const auto status = check_dir(dir.path());
  CHECK(status.code() == StatusCode::kModelMismatch);
  CHECK(status.message().find("layers.4.attn.wo_b.scale") != std::string::npos);
}

TEST_CASE("schema: FP4 is accepted for routed experts only", "[schema]") {
  dsv4::ModelConfig config =
      dsv4::load_model_config(dsv4::test::golden_dir("tiny-a-q").string()).value();
  const auto specs = dsv4::checkpoint_schema(config);
  int n_expert = 0, n_linear = 0;
  for (const auto& s : specs) {
    n_expert += s.role == dsv4::TensorRole::kExpert;
    n_linear += s.role == dsv4::TensorRole::kLinear;
  }
  CHECK(n_expert == 6 * 8 * 3);
  CHECK(n_linear == 6 * 8 + 2 /* CSA indexer wq_b */);
  dsv4::test::TempDir dir("schema-fp4-linear");
  copy_checkpoint("tiny-a-q", dir.path(), [](auto& t) {
    if (t.name == "layers.1.attn.wq_a.weight") {  // pretend an attention linear is packed FP4
      t.dtype = "I8";
      t.shape = {32, 32};
      t.bytes.resize(32 * 32);
    }
    return true;
  });
  const auto status = check_dir(dir.path());
  CHECK(status.code() == StatusCode::kModelMismatch);
  CHECK(status.message().find("layers.1.attn.wq_a.weight") != std::string::npos);
}

TEST_CASE("dequantisation: FP8 128x128 blocks and FP4 1x32 blocks apply the right scale",
          "[schema][quant]") {
  // FP8: [130, 2] weight; scales [2, 1] = {2^1, 2^-3}: rows 0..127 use the first, rows 128.. the
  // second.
  std::vector<uint8_t> fp8(130 * 2);
  for (size_t i = 0; i < fp8.size(); ++i) fp8[i] = dsv4::float_to_fp8_e4m3(i % 2 ? -1.5f : 3.0f);
  const uint8_t fp8_scales[2] = {128, 124};
  // The loader's views decode through WeightView (the scalar reference of every kernel).
  dsv4::WeightView w8;
  w8.format = dsv4::WeightFormat::kFp8Block;
  w8.out = 130, w8.in = 2, w8.data = fp8.data(), w8.scales = fp8_scales, w8.scale_cols = 1;
  std::vector<float> d8(130 * 2);
  for (int64_t o = 0; o < 130; ++o) w8.decode_row(o, d8.data() + o * 2);
  CHECK(d8[0] == 6.0f);
  CHECK(d8[1] == -3.0f);
  CHECK(d8[127 * 2] == 6.0f);
  CHECK(d8[128 * 2] == 3.0f / 8.0f);
  CHECK(d8[129 * 2 + 1] == -1.5f / 8.0f);

  // FP4: one row of 64 inputs, bytes hold (even = low nibble); scales per 32 inputs {2^0, 2^2}.
  std::vector<uint8_t> fp4(32);
  for (size_t b = 0; b < fp4.size(); ++b) fp4[b] = uint8_t(0x2 | (0xB << 4));  // 1.0 then -1.5
  const uint8_t fp4_scales[2] = {127, 129};
  dsv4::WeightView w4;
  w4.format = dsv4::WeightFormat::kFp4Block;
  w4.out = 1, w4.in = 64, w4.data = fp4.data(), w4.scales = fp4_scales, w4.scale_cols = 2;
  std::vector<float> d4(64);
  w4.decode_row(0, d4.data());
  for (int64_t i = 0; i < 64; ++i) CHECK(w4.at(0, i) == d4[size_t(i)]);  // both decoders agree
  CHECK(d4[0] == 1.0f);
  CHECK(d4[1] == -1.5f);
  CHECK(d4[31] == -1.5f);
  CHECK(d4[32] == 4.0f);
  CHECK(d4[63] == -6.0f);
}

TEST_CASE("schema: every row has its own slot in prepared weights", "[schema]") {
  dsv4::ModelConfig c;
  {
    auto loaded = dsv4::load_model_config(dsv4::test::golden_dir("tiny-a").string());
    REQUIRE(loaded.is_ok());
    c = loaded.value();
  }
  dsv4::ModelWeights w;
  dsv4::prepare_weights(c, w);
  std::set<const void*> seen;
  for (const auto& spec : dsv4::checkpoint_schema(c)) {
    INFO(spec.name);
    REQUIRE(spec.slot);
    const dsv4::WeightSlot slot = spec.slot(w);
    const void* where = std::visit([](auto* p) -> const void* { return p; }, slot);
    REQUIRE(where != nullptr);
    CHECK(seen.insert(where).second);  // no two rows share a destination
    // Matrices land in views, vectors in fp32 vectors, tid2eid in the integer table.
    if (spec.role == dsv4::TensorRole::kTokenTable)
      CHECK(std::holds_alternative<std::vector<int32_t>*>(slot));
    else if (spec.role != dsv4::TensorRole::kFloat)
      CHECK(std::holds_alternative<dsv4::WeightView*>(slot));
  }
}
