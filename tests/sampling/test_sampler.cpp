// The sampler: its distributions against independently computed targets (chi-square), its
// reproducibility, penalties, bias and stop conditions.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>

#include "dsv4/sampling/sampler.hpp"
#include "dsv4/text/tokenizer.hpp"

namespace {

using dsv4::sampling::Sampler;
using dsv4::sampling::SamplerParams;

const std::vector<float> kLogits = {2.0f, 1.5f, 0.3f, -0.4f, 1.1f, -2.0f, 0.9f, 0.0f};

// The target, written independently of the sampler: softmax(l / T), keep the top k, the
// smallest nucleus reaching top_p, the tokens at or above min_p × max; renormalise.
std::vector<double> target(const std::vector<float>& logits, double t, int k, double top_p,
                           double min_p) {
  const size_t n = logits.size();
  std::vector<double> p(n);
  const double m = *std::max_element(logits.begin(), logits.end());
  for (size_t i = 0; i < n; ++i) p[i] = std::exp((logits[i] - m) / t);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  std::vector<bool> kept(n, true);
  if (k > 0)
    for (size_t r = size_t(k); r < n; ++r) kept[order[r]] = false;
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += kept[i] ? p[i] : 0;
  double cumulative = 0;
  bool reached = false;
  for (size_t r = 0; r < n; ++r) {
    const size_t i = order[r];
    if (!kept[i]) continue;
    if (reached) kept[i] = false;
    cumulative += p[i] / total;
    if (cumulative >= top_p) reached = true;
  }
  for (size_t i = 0; i < n; ++i)
    if (p[i] < min_p * p[order[0]]) kept[i] = false;
  total = 0;
  for (size_t i = 0; i < n; ++i) total += kept[i] ? p[i] : 0;
  for (size_t i = 0; i < n; ++i) p[i] = kept[i] ? p[i] / total : 0;
  return p;
}

// Chi-square statistic of `draws` samples against `expected`, and its 0.1% critical value.
void check_chi_square(Sampler& sampler, const std::vector<double>& expected, int draws) {
  std::vector<int> counts(expected.size(), 0);
  for (int d = 0; d < draws; ++d) ++counts[size_t(sampler.sample(kLogits).value())];
  double chi2 = 0;
  int df = -1;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (expected[i] == 0) {
      CHECK(counts[i] == 0);  // a truncated token is never drawn
      continue;
    }
    const double e = expected[i] * draws;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
    ++df;
  }
  static const double kCritical001[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12};
  REQUIRE(df >= 1);
  REQUIRE(df <= 8);
  INFO("chi2 " << chi2 << " with " << df << " degrees of freedom");
  CHECK(chi2 < kCritical001[df]);
}

std::unique_ptr<Sampler> make(SamplerParams p) { return Sampler::create(std::move(p)).value(); }

}  // namespace

TEST_CASE("temperature, top-k, top-p and min-p sampling match their target distributions") {
  struct Case {
    float t;
    int k;
    float top_p, min_p;
  };
  for (const Case c :
       {Case{1.0f, 0, 1.0f, 0.0f}, Case{0.7f, 0, 0.9f, 0.0f}, Case{1.3f, 3, 1.0f, 0.0f},
        Case{1.0f, 0, 1.0f, 0.2f}, Case{0.5f, 5, 0.8f, 0.05f}}) {
    INFO("T " << c.t << " k " << c.k << " top_p " << c.top_p << " min_p " << c.min_p);
    SamplerParams p;
    p.temperature = c.t, p.top_k = c.k, p.top_p = c.top_p, p.min_p = c.min_p, p.seed = 7;
    auto s = make(p);
    const auto expected = target(kLogits, c.t, c.k, c.top_p, c.min_p);
    // The analytic distribution the sampler reports agrees with the target to float precision.
    for (const auto& [token, prob] : s->distribution(kLogits).value())
      CHECK(prob == Approx(expected[size_t(token)]).epsilon(1e-5));
    check_chi_square(*s, expected, 100000);
  }
}

TEST_CASE("a seed gives the same tokens every time, another seed others") {
  SamplerParams p;
  p.temperature = 1.0f, p.seed = 1234;
  auto a = make(p), b = make(p);
  p.seed = 99;
  auto c = make(p);
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 200; ++i) {
    ta.push_back(a->sample(kLogits).value());
    tb.push_back(b->sample(kLogits).value());
    tc.push_back(c->sample(kLogits).value());
  }
  CHECK(ta == tb);
  CHECK(ta != tc);
  a->reset();
  CHECK(a->sample(kLogits).value() == ta[0]);
}

TEST_CASE("the generator is xoshiro256** seeded by splitmix64, identical on every platform") {
  // splitmix64's first output from state 0 is the published constant; the stream that follows
  // is pinned so a change of generator cannot pass unnoticed.
  dsv4::sampling::Rng rng(0);
  const uint64_t first = rng.next();
  dsv4::sampling::Rng again(0);
  CHECK(again.next() == first);
  CHECK(first == 0x99EC5F36CB75F2B4ull);
  const double u = rng.uniform();
  CHECK((u >= 0.0 && u < 1.0));
}

TEST_CASE("greedy takes the highest logit, the lowest id on ties") {
  SamplerParams p;
  p.temperature = 0.0f;
  auto s = make(p);
  CHECK(s->sample(kLogits).value() == 0);
  const std::vector<float> tie = {0.0f, 3.0f, 3.0f, 1.0f};
  CHECK(s->sample(tie).value() == 1);
}

TEST_CASE("penalties and bias change the logits as documented") {
  SamplerParams p;
  p.temperature = 1.0f;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.25f;
  p.frequency_penalty = 0.5f;
  p.logit_bias[3] = 1.0f;
  auto s = make(p);
  s->accept(0);
  s->accept(0);
  s->accept(5);
  // Token 0: 2.0 / 2 − 0.25 − 2 × 0.5 = −0.25; token 5: −2.0 × 2 − 0.25 − 0.5 = −4.75;
  // token 3: −0.4 + 1 = 0.6.
  std::vector<float> expected = kLogits;
  expected[0] = -0.25f, expected[5] = -4.75f, expected[3] = 0.6f;
  const auto want = target(expected, 1.0, 0, 1.0, 0.0);
  for (const auto& [token, prob] : s->distribution(kLogits).value())
    CHECK(prob == Approx(want[size_t(token)]).epsilon(1e-5));
  SamplerParams ban;
  ban.temperature = 0.0f;
  ban.logit_bias[0] = -INFINITY;
  CHECK(make(ban)->sample(kLogits).value() == 1);
}

TEST_CASE("bad logits and bad parameters are refused") {
  auto s = make({});
  std::vector<float> nan_logits = kLogits;
  nan_logits[2] = NAN;
  CHECK(s->sample(nan_logits).status().code() == dsv4::StatusCode::kInvalidArgument);
  const std::vector<float> masked(4, -INFINITY);
  CHECK(!s->sample(masked).is_ok());
  CHECK(!s->sample({}).is_ok());
  SamplerParams p;
  p.top_p = 0.0f;
  CHECK(!Sampler::create(p).is_ok());
  p = {};
  p.temperature = -1.0f;
  CHECK(!Sampler::create(p).is_ok());
  p = {};
  p.stop_strings = {""};
  CHECK(!Sampler::create(p).is_ok());
}

TEST_CASE("stop tokens and stop strings end generation") {
  const auto tok = dsv4::text::Tokenizer::load(DSV4_TOKENIZER_DIR).value();
  SamplerParams p;
  p.stop_tokens = {1};
  p.stop_strings = {"\n\nUser:"};
  auto s = make(p);
  s->set_tokenizer(tok);
  bool stopped = false;
  for (int32_t id : tok->encode("Sure.\n\nUser: more").value()) {
    stopped = s->accept(id);
    if (stopped) break;
  }
  CHECK(stopped);
  s->reset();
  CHECK(!s->accept(19923));
  CHECK(s->accept(1));
}
