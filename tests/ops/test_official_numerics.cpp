// The official numerics' reference operators against the test vectors of
// ../shared/spec/official-numerics.md §9 (7: the GEMMs and the FP4 nibble order, 8: Sinkhorn,
// 9: sparse attention); vectors 1–6 and 10 are in tests/model/test_kv_formats.cpp.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "dsv4/ops/official_numerics.hpp"

using namespace dsv4::ops::official;

TEST_CASE("official: fp8_gemm of ones against e4m3 1.0 with scale 2^-3 is 16 (vector 7)",
          "[official]") {
  std::vector<float> x(128, 1.0f);
  std::vector<uint8_t> codes(128, dsv4::float_to_fp8_e4m3(1.0f));
  const uint8_t scale = 127 - 3;
  dsv4::WeightView w;
  w.format = dsv4::WeightFormat::kFp8Block, w.out = 1, w.in = 128;
  w.data = codes.data(), w.scales = &scale, w.scale_cols = 1;
  float y = 0.0f;
  fp8_gemm(x.data(), 1, w, &y);
  CHECK(y == 16.0f);
}

TEST_CASE("official: fp4_gemm of ones against e2m1 1.0 with scale 2^-1 per 32 is 128 (vector 7)",
          "[official]") {
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> codes(128, 0x22);  // two codes 0x2 (1.0) per byte
  std::vector<uint8_t> scales(8, 127 - 1);
  dsv4::WeightView w;
  w.format = dsv4::WeightFormat::kFp4Block, w.out = 1, w.in = 256;
  w.data = codes.data(), w.scales = scales.data(), w.scale_cols = 8;
  float y = 0.0f;
  fp4_gemm(x.data(), 1, w, &y);
  CHECK(y == 128.0f);
  // The nibble order: byte 0x72 is element 0 = 1.0 (low nibble), element 1 = 6.0.
  const uint8_t byte = 0x72;
  CHECK(dsv4::fp4_e2m1_packed_at(&byte, 0) == 1.0f);
  CHECK(dsv4::fp4_e2m1_packed_at(&byte, 1) == 6.0f);
}

TEST_CASE("official: Sinkhorn of zero mixes (vector 8)", "[official]") {
  const int64_t hc = 4;
  std::vector<float> mixes(size_t((2 + hc) * hc), 0.0f), base(mixes.size(), 0.0f);
  const float scale[3] = {1.0f, 1.0f, 1.0f};
  float pre[4], post[4], comb[16];
  hc_split_sinkhorn(mixes.data(), scale, base.data(), hc, 20, 1e-6f, pre, post, comb);
  for (int j = 0; j < 4; ++j) {
    CHECK(pre[j] == 0x1.000022p-1f);
    CHECK(post[j] == 1.0f);
  }
  for (float c : comb) CHECK(c == 0x1.ffffep-3f);
}

TEST_CASE(
    "official: sparse attention with one valid key gives bf16(v/2), -1 slots add 0 (vector 9)",
    "[official]") {
  const int64_t h = 2, d = 8;
  std::vector<float> q(static_cast<size_t>(h * d), 0.0f), v(static_cast<size_t>(d)),
      out(static_cast<size_t>(h * d));
  for (int64_t c = 0; c < d; ++c) v[size_t(c)] = round_bf16(0.3f * float(c + 1));
  const float sinks[2] = {0.0f, 0.0f};
  // q·k = 0 and sink 0: p = 1 for the key, e^0 = 1 for the sink, o = v / 2.
  std::vector<const float*> keys = {nullptr, v.data(), nullptr, nullptr};
  sparse_attn(q.data(), h, d, keys.data(), int64_t(keys.size()), sinks, 1.0f / std::sqrt(512.0f),
              out.data());
  for (int64_t head = 0; head < h; ++head)
    for (int64_t c = 0; c < d; ++c)
      CHECK(out[size_t(head * d + c)] == round_bf16(v[size_t(c)] / 2.0f));
  // 70 slots (two blocks of 64), one valid: the same result.
  std::vector<const float*> many(70, nullptr);
  many[66] = v.data();
  sparse_attn(q.data(), h, d, many.data(), int64_t(many.size()), sinks, 1.0f / std::sqrt(512.0f),
              out.data());
  for (int64_t c = 0; c < d; ++c) CHECK(out[size_t(c)] == round_bf16(v[size_t(c)] / 2.0f));
}
