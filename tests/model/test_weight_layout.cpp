// Weights repacked at load into the backend's layout (ModelLoadOptions::repack_weights) against
// the same weights as stored: the same logits bit for bit, the same fingerprint (saved sessions
// move between the two), and write_checkpoint writes the checkpoint's own order back.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "dsv4/backend/registry.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/model/weights.hpp"
#include "test_support.hpp"

namespace {

dsv4::ModelLoadOptions with_repack(bool repack) {
  dsv4::ModelLoadOptions options;
  options.repack_weights = repack;
  return options;
}

// GEMM weights in the kernels' units (tiled or row units) rather than as stored.
int64_t count_in_units(const dsv4::ModelWeights& w) {
  int64_t n = 0;
  dsv4::for_each_gemm_weight(w, [&](const dsv4::Linear& l) { n += l.in_units() ? 1 : 0; });
  return n;
}

// Prefill of `tokens` minus the last, then the last as a decode step: every logit.
std::vector<float> logits_of(const std::shared_ptr<const dsv4::Model>& model,
                             const std::vector<int32_t>& tokens) {
  const int64_t V = model->config().vocab_size, n = int64_t(tokens.size());
  auto session = dsv4::Session::create(model).value();
  std::vector<float> out(size_t(n * V));
  REQUIRE(session->append({tokens.data(), size_t(n - 1)}, out.data()).is_ok());
  REQUIRE(session->append({tokens.data() + n - 1, 1}, out.data() + (n - 1) * V).is_ok());
  for (float x : out) REQUIRE(std::isfinite(x));
  return out;
}

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 37 + 11) % vocab);
  return t;
}

}  // namespace

TEST_CASE("weight layout: a repacked checkpoint gives the logits of the stored one, bit for bit",
          "[model][layout]") {
  auto stored = dsv4::test::golden_model("tiny-a-q", with_repack(false));
  auto repacked = dsv4::test::golden_model("tiny-a-q", with_repack(true));
  CHECK(count_in_units(stored->weights()) == 0);
  CHECK(count_in_units(repacked->weights()) > 0);  // the BF16 (and, but on Intel, FP8) matrices
  CHECK(repacked->fingerprint() == stored->fingerprint());
  const auto tokens = some_tokens(40, stored->config().vocab_size);
  const std::vector<float> a = logits_of(stored, tokens), b = logits_of(repacked, tokens);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

TEST_CASE("weight layout: the demo model's FP8, FP4 and BF16 matrices in units give the same bits",
          "[model][layout]") {
  const dsv4::ModelConfig config = dsv4::demo_model_config(3);
  const auto weights = dsv4::random_weights(config, 7, dsv4::RandomWeightFormats::official());
  auto stored = dsv4::Model::from_weights(config, weights, with_repack(false)).value();
  auto repacked = dsv4::Model::from_weights(config, weights, with_repack(true)).value();
  // Every GEMM weight of the demo shape has whole 64-byte rows, so each is in the units the CPU
  // backend asks for: tiled, but FP8 in rows on Intel's cores (which read FP8 faster in rows;
  // the kernels' tiled FP8 is checked against rows at every ISA in test_backend) and FP4 in row
  // units there.
  auto cpu = dsv4::create_backend("cpu").value();
  int64_t gemm_weights = 0, wanted_in_units = 0, fp8 = 0;
  dsv4::for_each_gemm_weight(weights, [&](const dsv4::Linear& l) {
    ++gemm_weights;
    fp8 += l.format == dsv4::WeightFormat::kFp8Block;
    wanted_in_units +=
        cpu->gemm_weight_layout(l, dsv4::Numerics::kExact) != dsv4::WeightLayout::kRows;
  });
  CHECK(wanted_in_units >= gemm_weights - fp8);
  CHECK(fp8 > 0);
  CHECK(count_in_units(repacked->weights()) == wanted_in_units);
  dsv4::for_each_gemm_weight(repacked->weights(), [&](const dsv4::Linear& l) {
    CHECK(l.layout == cpu->gemm_weight_layout(l, dsv4::Numerics::kExact));
  });
  // The copies leave the caller's weights as they were: its views still read their own buffers.
  CHECK(count_in_units(weights) == 0);
  CHECK(repacked->fingerprint() == stored->fingerprint());
  const auto tokens = some_tokens(70, config.vocab_size);
  const std::vector<float> a = logits_of(stored, tokens), b = logits_of(repacked, tokens);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
  // About the same resident bytes (padding rows only).
  const double ratio =
      double(repacked->resident_bytes()) / double(std::max<size_t>(1, stored->resident_bytes()));
  CHECK(ratio >= 1.0);
  CHECK(ratio < 1.001);
}

TEST_CASE("weight layout: sessions saved on one layout continue on the other", "[model][layout]") {
  auto stored = dsv4::test::golden_model("tiny-a-q", with_repack(false));
  auto repacked = dsv4::test::golden_model("tiny-a-q", with_repack(true));
  const auto tokens = some_tokens(30, stored->config().vocab_size);
  const int64_t V = stored->config().vocab_size;
  dsv4::test::TempDir dir("layout");
  const std::string path = (dir.path() / "s.session").string();
  auto first = dsv4::Session::create(repacked).value();
  REQUIRE(first->append({tokens.data(), 29}, nullptr).is_ok());
  REQUIRE(first->save(path).is_ok());
  auto resumed = dsv4::Session::load(stored, path);
  REQUIRE(resumed.is_ok());
  std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
  REQUIRE(resumed.value()->append({tokens.data() + 29, 1}, a.data()).is_ok());
  REQUIRE(first->append({tokens.data() + 29, 1}, b.data()).is_ok());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

TEST_CASE("weight layout: write_checkpoint of repacked weights writes the rows in stored order",
          "[model][layout]") {
  const dsv4::ModelConfig config = dsv4::demo_model_config(2);
  auto repacked =
      dsv4::Model::from_weights(
          config, dsv4::random_weights(config, 3, dsv4::RandomWeightFormats::official()))
          .value();
  REQUIRE(count_in_units(repacked->weights()) > 0);
  dsv4::test::TempDir dir("layout-write");
  REQUIRE(dsv4::write_checkpoint(dir.path().string(), config, repacked->weights()).is_ok());
  auto reloaded = dsv4::Model::load(dir.path().string(), with_repack(false));
  REQUIRE(reloaded.is_ok());
  CHECK(reloaded.value()->fingerprint() == repacked->fingerprint());
  const auto tokens = some_tokens(20, config.vocab_size);
  const std::vector<float> a = logits_of(repacked, tokens), b = logits_of(reloaded.value(), tokens);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

TEST_CASE("weight layout: a matrix whose layout stays is copied too, with the same codes",
          "[model][layout]") {
  // The copy puts every GEMM weight in the weights' own huge-page memory: a checkpoint's mapping
  // (4 KiB pages) is left behind even where the backend reads rows as stored (F32/BF16 rows of
  // 4 KiB and more on the CPU, the official numerics).
  const dsv4::ModelConfig config = dsv4::demo_model_config(2);
  const dsv4::ModelWeights original =
      dsv4::random_weights(config, 5, dsv4::RandomWeightFormats::official());
  dsv4::ModelWeights copied = original;
  dsv4::relayout_gemm_weights(copied,
                              [](const dsv4::WeightView&) { return dsv4::WeightLayout::kRows; });
  std::vector<const dsv4::Linear*> before, after;
  dsv4::for_each_gemm_weight(original, [&](const dsv4::Linear& l) { before.push_back(&l); });
  dsv4::for_each_gemm_weight(copied, [&](const dsv4::Linear& l) { after.push_back(&l); });
  REQUIRE(before.size() == after.size());
  REQUIRE(!before.empty());
  for (size_t i = 0; i < before.size(); ++i) {
    const dsv4::Linear& a = *before[i];
    const dsv4::Linear& b = *after[i];
    CHECK(b.layout == dsv4::WeightLayout::kRows);
    CHECK(b.data != a.data);  // a copy, not the original's buffer
    std::vector<uint8_t> ra(size_t(a.row_bytes())), rb(size_t(b.row_bytes()));
    for (int64_t o = 0; o < a.out; ++o) {
      a.copy_row_codes(o, ra.data());
      b.copy_row_codes(o, rb.data());
      REQUIRE(std::memcmp(ra.data(), rb.data(), ra.size()) == 0);
    }
  }
}
