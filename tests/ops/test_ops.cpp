// Each operator against a plain scalar reference written here, independently of the operator, plus
// the mathematical properties it must have.
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <random>

#include "dsv4/backend/registry.hpp"
#include "dsv4/ops/attention.hpp"
#include "dsv4/ops/compressor.hpp"
#include "dsv4/ops/grouped_output.hpp"
#include "dsv4/ops/hyper_connection.hpp"
#include "dsv4/ops/lightning_indexer.hpp"
#include "dsv4/ops/moe.hpp"
#include "dsv4/ops/rms_norm.hpp"
#include "dsv4/ops/rope.hpp"

namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double norm2(const float* x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s);
}

std::vector<double> softmax_ref(const std::vector<double>& z) {
  double mx = -INFINITY;
  for (double v : z) mx = std::max(mx, v);
  std::vector<double> p(z.size());
  double sum = 0.0;
  for (size_t i = 0; i < z.size(); ++i) sum += (p[i] = std::exp(z[i] - mx));
  for (double& v : p) v /= sum;
  return p;
}

}  // namespace

TEST_CASE("rms_norm: weighted and unweighted against the formula", "[ops][rms_norm]") {
  const auto x = random_vector(37, 1, 3.0f), w = random_vector(37, 2);
  std::vector<float> y(37), u(37);
  dsv4::ops::rms_norm(x.data(), w.data(), y.data(), 37, 1e-6f);
  dsv4::ops::rms_norm(x.data(), static_cast<const float*>(nullptr), u.data(), 37, 1e-6f);
  double ms = 0.0;
  for (float v : x) ms += double(v) * v / 37.0;
  const double denom = std::sqrt(ms + 1e-6);
  for (size_t i = 0; i < 37; ++i) {
    CHECK(y[i] == Approx(w[i] * x[i] / denom).epsilon(1e-6));
    CHECK(u[i] == Approx(x[i] / denom).epsilon(1e-6));
  }
  CHECK(norm2(u.data(), 37) == Approx(std::sqrt(37.0)).epsilon(1e-5));  // unit RMS
}

TEST_CASE("rope: frequencies, YaRN ramp, norm preservation and inversion", "[ops][rope]") {
  dsv4::ops::RopeParams plain{16, 10000.0};
  const auto theta = dsv4::ops::rope_frequencies(plain);
  REQUIRE(theta.size() == 8);
  for (size_t i = 0; i < 8; ++i)
    CHECK(theta[i] == Approx(std::pow(10000.0, -2.0 * double(i) / 16.0)));

  dsv4::ops::RopeParams yarn{64, 160000.0, true, 16.0, 65536, 32.0, 1.0};
  const auto base = dsv4::ops::rope_frequencies({64, 160000.0});
  const auto scaled = dsv4::ops::rope_frequencies(yarn);
  // low = floor(64 ln(65536/(32·2π)) / (2 ln 160000)), high = ceil(64 ln(65536/(2π)) / (2 ln
  // 160000)).
  const double low = std::floor(64 * std::log(65536 / (32 * 2 * M_PI)) / (2 * std::log(160000.0)));
  const double high = std::ceil(64 * std::log(65536 / (2 * M_PI)) / (2 * std::log(160000.0)));
  for (size_t i = 0; i < 32; ++i) {
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    CHECK(scaled[i] == Approx(base[i] / 16.0 * ramp + base[i] * (1 - ramp)).epsilon(1e-12));
  }
  CHECK(scaled[0] == base[0]);                 // highest frequency untouched
  CHECK(scaled[31] == Approx(base[31] / 16));  // lowest frequency interpolated

  auto x = random_vector(64, 3);
  const auto original = x;
  std::vector<float> c(32), s(32);
  dsv4::ops::rope_cos_sin(scaled, 12345, c.data(), s.data());
  dsv4::ops::rope_rotate(x.data(), 32, c.data(), s.data());
  CHECK(norm2(x.data(), 64) == Approx(norm2(original.data(), 64)).epsilon(1e-6));
  // Pair 1 rotated by 12345·θ_1, written out.
  const double a = 12345.0 * scaled[1];
  CHECK(x[2] == Approx(original[2] * std::cos(a) - original[3] * std::sin(a)).margin(1e-5));
  CHECK(x[3] == Approx(original[2] * std::sin(a) + original[3] * std::cos(a)).margin(1e-5));
  dsv4::ops::rope_rotate(x.data(), 32, c.data(), s.data(), /*inverse=*/true);
  for (size_t i = 0; i < 64; ++i) CHECK(x[i] == Approx(original[i]).margin(1e-5));
}

TEST_CASE("mHC: Sinkhorn output is doubly stochastic, coefficients match the spec", "[ops][mhc]") {
  const int64_t n = 4;
  const auto mix = random_vector(size_t((2 + n) * n), 4, 2.0f);
  const auto base = random_vector(size_t((2 + n) * n), 5);
  const float scale[3] = {0.7f, 1.3f, 0.9f};
  std::vector<float> pre(n), post(n), comb(n * n);
  dsv4::ops::mhc_coefficients(mix.data(), base.data(), scale, n, 20, 1e-6f, pre.data(), post.data(),
                              comb.data());
  for (int64_t i = 0; i < n; ++i) {
    double row = 0.0, col = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      row += comb[i * n + k];
      col += comb[k * n + i];
      CHECK(comb[i * n + k] > 0.0f);
    }
    CHECK(row == Approx(1.0).margin(1e-3));
    CHECK(col == Approx(1.0).margin(1e-5));  // columns are normalised last
  }
  // Independent reference of every step in double.
  std::vector<double> ref(n * n);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> z(n);
    for (int64_t k = 0; k < n; ++k)
      z[k] = double(mix[2 * n + i * n + k]) * scale[2] + base[2 * n + i * n + k];
    const auto p = softmax_ref(z);
    for (int64_t k = 0; k < n; ++k) ref[i * n + k] = p[k] + 1e-6;
  }
  auto cols = [&] {
    for (int64_t k = 0; k < n; ++k) {
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += ref[i * n + k];
      for (int64_t i = 0; i < n; ++i) ref[i * n + k] /= (s + 1e-6);
    }
  };
  auto rows = [&] {
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += ref[i * n + k];
      for (int64_t k = 0; k < n; ++k) ref[i * n + k] /= (s + 1e-6);
    }
  };
  cols();
  for (int it = 1; it < 20; ++it) rows(), cols();
  for (int64_t i = 0; i < n * n; ++i) CHECK(comb[i] == Approx(ref[i]).margin(1e-6));
  for (int64_t j = 0; j < n; ++j) {
    CHECK(pre[j] ==
          Approx(1.0 / (1.0 + std::exp(-(mix[j] * scale[0] + base[j]))) + 1e-6).epsilon(1e-6));
    CHECK(post[j] ==
          Approx(2.0 / (1.0 + std::exp(-(mix[n + j] * scale[1] + base[n + j])))).epsilon(1e-6));
  }
}

TEST_CASE("mHC: collapse and update follow the index order of the spec", "[ops][mhc]") {
  const int64_t n = 3, D = 5;
  const auto x = random_vector(n * D, 6), z = random_vector(D, 7);
  const std::vector<float> pre = {0.2f, 0.5f, 0.9f}, post = {1.1f, 0.3f, 1.7f};
  std::vector<float> comb(n * n);
  for (int64_t i = 0; i < n * n; ++i) comb[i] = float(i + 1) / 10.0f;  // deliberately not symmetric
  std::vector<float> y(D);
  dsv4::ops::mhc_collapse(x.data(), pre.data(), n, D, y.data());
  for (int64_t c = 0; c < D; ++c)
    CHECK(y[c] == Approx(0.2 * x[c] + 0.5 * x[D + c] + 0.9 * x[2 * D + c]));
  auto updated = x;
  std::vector<float> scratch(n * D);
  dsv4::ops::mhc_update(updated.data(), z.data(), post.data(), comb.data(), n, D, scratch.data());
  for (int64_t k = 0; k < n; ++k)
    for (int64_t c = 0; c < D; ++c) {
      double expected = post[k] * z[c];
      for (int64_t i = 0; i < n; ++i)
        expected += comb[i * n + k] * x[i * D + c];  // column k collects
      CHECK(updated[k * D + c] == Approx(expected).epsilon(1e-5));
    }
}

TEST_CASE("attention with sink: matches the reference, probabilities sum below 1",
          "[ops][attention]") {
  const int64_t H = 3, d = 8, n_vis = 8;
  const auto q = random_vector(H * d, 8);
  const std::vector<float> sinks = {0.5f, -1.0f, 2.0f};
  // Keys are the unit vectors, so output component j of each head is exactly p_j.
  std::vector<float> basis(n_vis * d, 0.0f);
  std::vector<const float*> keys;
  for (int64_t j = 0; j < n_vis; ++j) {
    basis[j * d + j] = 1.0f;
    keys.push_back(basis.data() + j * d);
  }
  std::vector<float> out(H * d), scratch(n_vis);
  dsv4::ops::attention_with_sink(q.data(), H, d, keys.data(), n_vis, sinks.data(), out.data(),
                                 scratch.data());
  for (int64_t h = 0; h < H; ++h) {
    std::vector<double> z;
    for (int64_t j = 0; j < n_vis; ++j) z.push_back(q[h * d + j] / std::sqrt(double(d)));
    z.push_back(sinks[h]);
    const auto p = softmax_ref(z);
    double total = 0.0;
    for (int64_t j = 0; j < n_vis; ++j) {
      CHECK(out[h * d + j] == Approx(p[j]).margin(1e-6));
      total += out[h * d + j];
    }
    CHECK(total < 1.0);
    CHECK(total == Approx(1.0 - p[n_vis]).margin(1e-6));  // the sink's share is dropped
  }
  // Empty visible set: everything goes to the sink.
  dsv4::ops::attention_with_sink(q.data(), H, d, keys.data(), 0, sinks.data(), out.data(),
                                 scratch.data());
  for (float v : out) CHECK(v == 0.0f);
}

TEST_CASE("compressors: HCA and overlapping CSA pooling", "[ops][compressor]") {
  const int64_t m = 4, half = 3;
  const auto kv = random_vector(m * 2 * half, 9), gate = random_vector(m * 2 * half, 10, 2.0f);
  const auto prev_kv = random_vector(m * half, 11), prev_gate = random_vector(m * half, 12, 2.0f);
  std::vector<float> out(2 * half);
  dsv4::ops::hca_pool(kv.data(), gate.data(), m, 2 * half, out.data());
  for (int64_t c = 0; c < 2 * half; ++c) {
    std::vector<double> z;
    for (int64_t s = 0; s < m; ++s) z.push_back(gate[s * 2 * half + c]);
    const auto p = softmax_ref(z);
    double expected = 0;
    for (int64_t s = 0; s < m; ++s) expected += p[s] * kv[s * 2 * half + c];
    CHECK(out[c] == Approx(expected).margin(1e-6));
  }
  for (bool first_window : {true, false}) {
    dsv4::ops::csa_pool(first_window ? nullptr : prev_kv.data(),
                        first_window ? nullptr : prev_gate.data(), kv.data(), gate.data(), m, half,
                        out.data());
    for (int64_t c = 0; c < half; ++c) {
      std::vector<double> z, v;
      if (!first_window)
        for (int64_t s = 0; s < m; ++s)
          z.push_back(prev_gate[s * half + c]), v.push_back(prev_kv[s * half + c]);
      for (int64_t s = 0; s < m; ++s)
        z.push_back(gate[s * 2 * half + half + c]), v.push_back(kv[s * 2 * half + half + c]);
      const auto p = softmax_ref(z);
      double expected = 0;
      for (size_t i = 0; i < p.size(); ++i) expected += p[i] * v[i];
      CHECK(out[c] == Approx(expected).margin(1e-6));
    }
  }
}

TEST_CASE("lightning indexer: score formula and deterministic top-k", "[ops][indexer]") {
  const int64_t nh = 4, c = 16;
  const auto q = random_vector(nh * c, 13), key = random_vector(c, 14), u = random_vector(nh, 15);
  double expected = 0.0;
  for (int64_t h = 0; h < nh; ++h) {
    double dot = 0;
    for (int64_t i = 0; i < c; ++i) dot += double(q[h * c + i]) * key[i];
    expected += u[h] * std::max(dot, 0.0);
  }
  CHECK(dsv4::ops::indexer_score(q.data(), u.data(), nh, c, key.data()) ==
        Approx(expected / 4.0).margin(1e-5));

  const std::vector<float> scores = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 0.0f, 2.5f};
  std::vector<int32_t> top;
  dsv4::ops::select_topk(scores.data(), 7, 3, top);
  CHECK(top == std::vector<int32_t>{1, 3, 6});
  dsv4::ops::select_topk(scores.data(), 7, 2, top);
  CHECK(top == std::vector<int32_t>{1, 3});
  dsv4::ops::select_topk(scores.data(), 3, 8, top);  // fewer than k: all
  CHECK(top == std::vector<int32_t>{0, 1, 2});
  // Random: the chosen set is exactly the k largest.
  const auto many = random_vector(500, 16);
  dsv4::ops::select_topk(many.data(), 500, 37, top);
  auto sorted = many;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  for (int32_t i : top) CHECK(many[i] >= sorted[36]);
  CHECK(top.size() == 37);
}

TEST_CASE("moe: scoring functions, bias-only selection, weights and clamped SwiGLU", "[ops][moe]") {
  const std::vector<float> z = {0.5f, -2.0f, 3.0f, 1.0f, 30.0f, -40.0f};
  std::vector<float> s(6);
  dsv4::ops::router_scores(z.data(), 6, dsv4::ScoringFunc::kSqrtSoftplus, s.data());
  for (int i = 0; i < 6; ++i)
    CHECK(s[i] == Approx(std::sqrt(std::log1p(std::exp(double(z[i]))))).epsilon(1e-6));
  dsv4::ops::router_scores(z.data(), 6, dsv4::ScoringFunc::kSigmoid, s.data());
  for (int i = 0; i < 6; ++i)
    CHECK(s[i] == Approx(1.0 / (1.0 + std::exp(-double(z[i])))).epsilon(1e-6));
  dsv4::ops::router_scores(z.data(), 6, dsv4::ScoringFunc::kSoftmax, s.data());
  CHECK(std::accumulate(s.begin(), s.end(), 0.0) == Approx(1.0));

  const std::vector<float> scores = {0.9f, 0.1f, 0.5f, 0.4f};
  const std::vector<float> bias = {-1.0f, 1.0f, 0.0f, 0.0f};
  int32_t sel[2];
  dsv4::ops::select_experts(scores.data(), bias.data(), 4, 2, sel);
  CHECK(sel[0] == 1);  // 0.1 + 1.0
  CHECK(sel[1] == 2);  // 0.5
  float w[2];
  dsv4::ops::routing_weights(scores.data(), sel, 2, dsv4::ScoringFunc::kSqrtSoftplus, 1.5f, w);
  CHECK(w[0] == Approx(0.1 / 0.6 * 1.5));  // the bias never enters the weights
  CHECK(w[1] == Approx(0.5 / 0.6 * 1.5));
  dsv4::ops::routing_weights(scores.data(), sel, 2, dsv4::ScoringFunc::kSoftmax, 2.0f, w);
  CHECK(w[0] == Approx(0.2));  // softmax: no renormalisation
  CHECK(w[1] == Approx(1.0));

  const std::vector<float> gate = {-3.0f, 0.5f, 12.0f}, up = {4.0f, -0.5f, -20.0f};
  std::vector<float> out(3);
  dsv4::ops::swiglu_clamped(gate.data(), up.data(), 3, 10.0f, out.data());
  auto silu = [](double x) { return x / (1.0 + std::exp(-x)); };
  CHECK(out[0] == Approx(silu(-3.0) * 4.0));
  CHECK(out[1] == Approx(silu(0.5) * -0.5));
  CHECK(out[2] == Approx(silu(10.0) * -10.0));  // gate clamped above only, up clamped both ways
  dsv4::ops::swiglu_clamped(gate.data(), up.data(), 3, 0.0f, out.data());
  CHECK(out[2] == Approx(silu(12.0) * -20.0));  // limit 0: no clamp
}

TEST_CASE("grouped output projection: each group of heads meets its own rows of wo_a",
          "[ops][attention]") {
  const int64_t T = 5, H = 6, d = 4, G = 3, R = 2, gin = H * d / G;
  const auto o = random_vector(T * H * d, 17), wo_a = random_vector(G * R * gin, 18);
  std::vector<float> out(T * G * R);
  auto cpu = dsv4::create_backend("cpu").value();
  REQUIRE(dsv4::ops::grouped_output_projection(
              *cpu, o.data(), T, G, gin, dsv4::f32_weights(wo_a.data(), G * R, gin), R, out.data())
              .is_ok());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t r = 0; r < R; ++r) {
        double expected = 0.0;  // heads g·H/G .. (g+1)·H/G − 1, concatenated
        for (int64_t i = 0; i < gin; ++i)
          expected += double(o[t * H * d + g * gin + i]) * wo_a[(g * R + r) * gin + i];
        CHECK(out[t * G * R + g * R + r] == Approx(expected).margin(1e-5));
      }
}
