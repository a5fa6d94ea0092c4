#include <catch2/catch.hpp>
#include <map>
#include <sstream>

#include "dsv4/formats/safetensors.hpp"
#include "test_support.hpp"

using dsv4::StatusCode;
namespace fs = std::filesystem;

namespace {
StatusCode status_from_name(const std::string& name) {
  for (int c = 0; c <= int(StatusCode::kInternal); ++c)
    if (name == dsv4::status_code_name(StatusCode(c))) return StatusCode(c);
  FAIL("unknown status name " << name);
  return StatusCode::kInternal;
}

std::vector<std::pair<std::string, StatusCode>> manifest(const std::string& prefix) {
  std::vector<std::pair<std::string, StatusCode>> out;
  std::istringstream in(dsv4::test::read_text(dsv4::test::source_dir() / "tests/corrupt/MANIFEST"));
  std::string file, status;
  while (in >> file >> status)
    if (file.rfind(prefix, 0) == 0) out.emplace_back(file, status_from_name(status));
  return out;
}
}  // namespace

TEST_CASE("safetensors: reads the golden checkpoint with correct dtypes, shapes and bytes",
          "[safetensors]") {
  auto file = dsv4::SafetensorsFile::open(
      (dsv4::test::golden_dir("tiny-a") / "model.safetensors").string());
  REQUIRE(file.is_ok());
  const auto* embed = file->find("embed.weight");
  REQUIRE(embed != nullptr);
  CHECK(embed->dtype == dsv4::DType::kBF16);
  CHECK(embed->shape == dsv4::Shape{256, 64});
  CHECK(embed->end - embed->begin == 256 * 64 * 2);
  const auto* tid2eid = file->find("layers.0.ffn.gate.tid2eid");
  REQUIRE(tid2eid != nullptr);
  CHECK(tid2eid->dtype == dsv4::DType::kI32);
  // Expert ids are in [0, 8): a real value check through the zero-copy view.
  const dsv4::ConstTensorView v = file->view(*tid2eid);
  for (int64_t i = 0; i < v.numel(); ++i) {
    const float e = dsv4::element_as_float(v, i);
    REQUIRE(e >= 0.0f);
    REQUIRE(e < 8.0f);
  }
  CHECK(file->header().metadata.at("format") == "pt");
  CHECK(file->find("no.such.tensor") == nullptr);
}

TEST_CASE("safetensors: values written by an independent writer read back exactly",
          "[safetensors]") {
  dsv4::test::TempDir dir("st-roundtrip");
  std::vector<float> values = {1.0f, -2.5f, 3.25f, 1e-20f, -0.0f, 65504.0f};
  dsv4::test::RawTensor bf16{"b", "BF16", {3}, {}};
  for (float x : {1.5f, -3.0f, 0.1f}) {
    const uint16_t h = dsv4::float_to_bf16(x);
    bf16.bytes.push_back(uint8_t(h & 0xff));
    bf16.bytes.push_back(uint8_t(h >> 8));
  }
  dsv4::test::RawTensor fp4{"q", "F4", {4}, {0x21, 0xf7}};
  dsv4::test::write_safetensors(dir.path() / "x.safetensors",
                                {dsv4::test::f32_tensor("a", {2, 3}, values), bf16, fp4,
                                 dsv4::test::f32_tensor("empty", {0, 4}, {})});
  auto file = dsv4::SafetensorsFile::open((dir.path() / "x.safetensors").string());
  REQUIRE(file.is_ok());
  std::vector<float> got(6);
  dsv4::decode_to_float(file->view(*file->find("a")), got);
  CHECK(got == values);
  const auto b = file->view(*file->find("b"));
  CHECK(dsv4::element_as_float(b, 0) == 1.5f);
  CHECK(dsv4::element_as_float(b, 1) == -3.0f);
  const auto q = file->view(*file->find("q"));
  CHECK(q.dtype == dsv4::DType::kF4E2M1);
  CHECK(dsv4::element_as_float(q, 2) == 6.0f);
  CHECK(dsv4::element_as_float(q, 3) == -6.0f);
  CHECK(file->view(*file->find("empty")).numel() == 0);
}

TEST_CASE("safetensors: sharded checkpoints resolve through the index", "[safetensors]") {
  dsv4::test::TempDir dir("st-sharded");
  dsv4::test::write_safetensors(
      dir.path() / "model-00001-of-00002.safetensors",
      {dsv4::test::f32_tensor("a", {2}, {1, 2}), dsv4::test::f32_tensor("b", {1}, {3})});
  dsv4::test::write_safetensors(dir.path() / "model-00002-of-00002.safetensors",
                                {dsv4::test::f32_tensor("c", {1}, {4})});
  dsv4::test::write_text(dir.path() / "model.safetensors.index.json",
                         R"({"metadata": {"total_size": 16}, "weight_map": {
                               "a": "model-00001-of-00002.safetensors",
                               "b": "model-00001-of-00002.safetensors",
                               "c": "model-00002-of-00002.safetensors"}})");
  auto ckpt = dsv4::Checkpoint::open(dir.path().string());
  REQUIRE(ckpt.is_ok());
  CHECK(ckpt->n_files() == 2);
  CHECK(ckpt->names() == std::vector<std::string>{"a", "b", "c"});
  CHECK(dsv4::element_as_float(ckpt->view(ckpt->find("c")), 0) == 4.0f);
  CHECK(dsv4::element_as_float(ckpt->view(ckpt->find("a")), 1) == 2.0f);

  SECTION("an index naming a tensor its shard lacks is rejected") {
    dsv4::test::write_text(dir.path() / "model.safetensors.index.json",
                           R"({"weight_map": {"z": "model-00002-of-00002.safetensors"}})");
    auto bad = dsv4::Checkpoint::open(dir.path().string());
    CHECK(bad.status().code() == StatusCode::kCorruptFile);
    CHECK(bad.status().message().find("\"z\"") != std::string::npos);
  }
  SECTION("shard names cannot escape the folder") {
    dsv4::test::write_text(dir.path() / "model.safetensors.index.json",
                           R"({"weight_map": {"a": "../x.safetensors"}})");
    CHECK(dsv4::Checkpoint::open(dir.path().string()).status().code() == StatusCode::kCorruptFile);
  }
  SECTION("a missing shard is an IO error naming it") {
    dsv4::test::write_text(dir.path() / "model.safetensors.index.json",
                           R"({"weight_map": {"a": "gone.safetensors"}})");
    auto bad = dsv4::Checkpoint::open(dir.path().string());
    CHECK(bad.status().code() == StatusCode::kIo);
    CHECK(bad.status().message().find("gone.safetensors") != std::string::npos);
  }
  SECTION("an index without weight_map is corrupt") {
    dsv4::test::write_text(dir.path() / "model.safetensors.index.json", R"({"metadata": {}})");
    CHECK(dsv4::Checkpoint::open(dir.path().string()).status().code() == StatusCode::kCorruptFile);
  }
}

TEST_CASE("safetensors: missing paths are IO errors", "[safetensors]") {
  CHECK(dsv4::Checkpoint::open("/nonexistent/dsv4").status().code() == StatusCode::kIo);
  dsv4::test::TempDir dir("st-empty");
  CHECK(dsv4::Checkpoint::open(dir.path().string()).status().code() == StatusCode::kIo);
}

TEST_CASE("safetensors: every file of the corrupt corpus gets its expected status",
          "[safetensors][corrupt]") {
  const auto cases = manifest("safetensors/");
  REQUIRE(cases.size() >= 20);
  for (const auto& [file, expected] : cases) {
    const fs::path path = dsv4::test::source_dir() / "tests/corrupt" / file;
    auto opened = dsv4::SafetensorsFile::open(path.string());
    INFO(file << " -> " << opened.status().to_string());
    CHECK(opened.status().code() == expected);
    CHECK(opened.status().message().find(path.filename().string()) != std::string::npos);
  }
}

TEST_CASE("safetensors: every truncation of a valid file is rejected cleanly",
          "[safetensors][corrupt]") {
  const std::string whole =
      dsv4::test::read_text(dsv4::test::golden_dir("tiny-a-q") / "model.safetensors");
  const auto* bytes = reinterpret_cast<const std::byte*>(whole.data());
  REQUIRE(dsv4::parse_safetensors_header({bytes, whole.size()}).is_ok());
  // Truncate inside the header (every length) and inside the data section (a sample).
  for (size_t n = 0; n < 50000 && n < whole.size(); n += (n < 48000 ? 1 : 997)) {
    std::vector<std::byte> prefix(bytes, bytes + n);  // own buffer so ASan sees reads past it
    auto parsed = dsv4::parse_safetensors_header(prefix);
    if (parsed.is_ok()) FAIL("truncated to " << n << " bytes but accepted");
    REQUIRE(parsed.status().code() == StatusCode::kCorruptFile);
  }
}

TEST_CASE("safetensors: random byte flips never crash the parser", "[safetensors][corrupt]") {
  const std::string whole =
      dsv4::test::read_text(dsv4::test::golden_dir("tiny-a") / "model.safetensors");
  const size_t header_end = 8 + 29048;
  std::mt19937 rng(7);
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::byte> copy(header_end + 64);
    std::memcpy(copy.data(), whole.data(), copy.size());
    for (int f = 0; f < 3; ++f) copy[rng() % header_end] = std::byte(rng() & 0xff);
    auto parsed = dsv4::parse_safetensors_header(copy);
    if (!parsed.is_ok()) {
      ++rejected;
      CHECK((parsed.status().code() == StatusCode::kCorruptFile));
    }
  }
  CHECK(rejected > 1000);  // the data section is truncated to 64 bytes, so nearly all must fail
}
