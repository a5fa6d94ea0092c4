// dsv4's official-numerics operators against the official_ref emulator on random cases
// (tests/official/make_cases.py writes them, with the emulator's answers): bit-for-bit equality,
// NaN counted as a difference.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "dsv4/core/kv_codec.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/ops/official_numerics.hpp"

namespace {

using namespace dsv4;

const Checkpoint& cases() {
  static const Checkpoint file = Checkpoint::open(DSV4_OFFICIAL_CASES).value();
  return file;
}

template <class T>
std::vector<T> read(const std::string& name, std::vector<int64_t>* shape = nullptr) {
  const auto entry = cases().find(name);
  if (!entry.info) throw std::runtime_error("missing tensor " + name);
  const auto view = cases().view(entry);
  if (shape) *shape = view.shape;
  std::vector<T> out(size_t(view.numel()));
  std::memcpy(out.data(), view.data, out.size() * sizeof(T));
  return out;
}

// Bitwise equal (so -0 vs +0 and NaN count), reporting the first difference.
void require_identical(const std::vector<float>& got, const std::vector<float>& want,
                       const std::string& what) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want[i], 4);
    INFO(what << " element " << i << ": " << got[i] << " vs the emulator's " << want[i]);
    REQUIRE(std::isfinite(got[i]));
    REQUIRE(a == b);
  }
}

}  // namespace

TEST_CASE("official cross-check: KV fake-quantisation of main entries and indexer keys",
          "[official]") {
  const int64_t shapes[3][2] = {{512, 64}, {32, 8}, {100, 16}};
  for (int c = 0; c < 3; ++c) {
    std::vector<int64_t> shape;
    auto x = read<float>("kv" + std::to_string(c) + ".in", &shape);
    const EntryCodec codec{CacheFormat::kFp8Rope, shapes[c][0], shapes[c][1]};
    for (int64_t r = 0; r < shape[0]; ++r) codec.fake_quantize(x.data() + r * shape[1]);
    require_identical(x, read<float>("kv" + std::to_string(c) + ".out"),
                      "kv case " + std::to_string(c));
  }
  const int64_t dims[3] = {128, 16, 24};
  for (int c = 0; c < 3; ++c) {
    std::vector<int64_t> shape;
    auto x = read<float>("idx" + std::to_string(c) + ".in", &shape);
    const EntryCodec codec{CacheFormat::kFp4, dims[c], 0, true};
    for (int64_t r = 0; r < shape[0]; ++r) codec.fake_quantize(x.data() + r * shape[1]);
    require_identical(x, read<float>("idx" + std::to_string(c) + ".out"),
                      "indexer case " + std::to_string(c));
  }
}

TEST_CASE("official cross-check: FP8 and FP4 GEMMs", "[official]") {
  for (const char* kind : {"fp8_", "fp4_"}) {
    for (int c = 0; c < 3; ++c) {
      const std::string p = kind + std::to_string(c);
      std::vector<int64_t> xs, cs, ss;
      const auto x = read<float>(p + ".x", &xs);
      const auto codes = read<uint8_t>(p + ".codes", &cs);
      const auto scales = read<uint8_t>(p + ".scales", &ss);
      WeightView w;
      w.format = kind[2] == '8' ? WeightFormat::kFp8Block : WeightFormat::kFp4Block;
      w.out = cs[0], w.in = xs[1];
      w.data = codes.data(), w.scales = scales.data(), w.scale_cols = ss[1];
      std::vector<float> y(size_t(xs[0] * w.out));
      if (w.format == WeightFormat::kFp8Block) {
        ops::official::fp8_gemm(x.data(), xs[0], w, y.data());
      } else {
        ops::official::fp4_gemm(x.data(), xs[0], w, y.data());
      }
      require_identical(y, read<float>(p + ".y"), p);
    }
  }
}

TEST_CASE("official cross-check: Sinkhorn and sparse attention", "[official]") {
  for (int c = 0; c < 3; ++c) {
    const std::string p = "hc" + std::to_string(c) + ".";
    std::vector<int64_t> ms;
    const auto mixes = read<float>(p + "mixes", &ms);
    const auto scale = read<float>(p + "scale"), base = read<float>(p + "base");
    const int64_t hc = 4;
    std::vector<float> pre, post, comb;
    for (int64_t t = 0; t < ms[0]; ++t) {
      float a[4], b[4], m[16];
      ops::official::hc_split_sinkhorn(mixes.data() + t * ms[1], scale.data(), base.data(), hc, 20,
                                       1e-6f, a, b, m);
      pre.insert(pre.end(), a, a + 4);
      post.insert(post.end(), b, b + 4);
      comb.insert(comb.end(), m, m + 16);
    }
    require_identical(pre, read<float>(p + "pre"), p + "pre");
    require_identical(post, read<float>(p + "post"), p + "post");
    require_identical(comb, read<float>(p + "comb"), p + "comb");
  }
  for (int c = 0; c < 3; ++c) {
    const std::string p = "attn" + std::to_string(c) + ".";
    std::vector<int64_t> qs, ks;
    const auto q = read<float>(p + "q", &qs);
    const auto kv = read<float>(p + "kv", &ks);
    const auto idxs = read<int32_t>(p + "idxs");
    const auto sinks = read<float>(p + "sinks");
    std::vector<const float*> keys;
    for (int32_t i : idxs) keys.push_back(i < 0 ? nullptr : kv.data() + i * ks[1]);
    std::vector<float> out(q.size());
    ops::official::sparse_attn(q.data(), qs[0], qs[1], keys.data(), int64_t(keys.size()),
                               sinks.data(), float(1.0 / std::sqrt(double(qs[1]))), out.data());
    require_identical(out, read<float>(p + "out"), p + "out");
  }
}
