// Batched decode (Session::decode_batch): several sessions advanced by one token in one pass over
// the weights get exactly (memcmp) the logits and caches their own one-token appends would have
// given them, in every cache format and numerics mode, at different positions, with the disk tier
// and window checkpoints; a batch that fails leaves every session as it was.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>

#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"
#include "test_support.hpp"

namespace {

using dsv4::KvFormat;
using dsv4::Session;

// V4-shaped (window 128, CSA top-128, HCA 1/128, hash layers), official-format weights, a 1024
// vocabulary so that the head stays cheap.
std::shared_ptr<const dsv4::Model> v4_shaped(dsv4::Numerics numerics = dsv4::Numerics::kExact) {
  dsv4::ModelConfig c = dsv4::demo_model_config(5);
  c.vocab_size = 1024;
  dsv4::ModelLoadOptions options;
  options.numerics = numerics;
  return dsv4::Model::from_weights(
             c, dsv4::random_weights(c, 5, dsv4::RandomWeightFormats::official()), options)
      .value();
}

std::vector<int32_t> ids(int64_t n, int64_t vocab, int32_t salt) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = int32_t((i * 131 + 7 + salt * 17) % vocab);
  return out;
}

std::unique_ptr<Session> session_after(const std::shared_ptr<const dsv4::Model>& model,
                                       const dsv4::SessionOptions& options, int64_t prompt,
                                       int32_t salt) {
  auto s = Session::create(model, options).value();
  dsv4::AppendOptions none;
  none.output = dsv4::OutputMode::kNone;
  REQUIRE(s->append(ids(prompt, model->config().vocab_size, salt), none, nullptr).is_ok());
  return s;
}

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

struct BatchCase {
  std::string name;
  std::shared_ptr<const dsv4::Model> model;
  std::vector<dsv4::SessionOptions> options;  // one per session
  std::vector<int64_t> prompts;               // tokens before the batch, per session
};

dsv4::SessionOptions with_format(KvFormat format) {
  dsv4::SessionOptions o;
  o.kv_format = format;
  return o;
}

std::vector<BatchCase> batch_cases() {
  const auto tiny = dsv4::test::golden_model("tiny-a"),
             tiny_q = dsv4::test::golden_model("tiny-a-q");
  const auto tiny_official = dsv4::test::golden_model("tiny-a-q", dsv4::Numerics::kOfficial);
  const auto v4 = v4_shaped(), v4_official = v4_shaped(dsv4::Numerics::kOfficial);
  dsv4::SessionOptions checkpointed = with_format(KvFormat::kPacked);
  checkpointed.window_checkpoint_interval = 16;
  dsv4::SessionOptions budgeted = with_format(KvFormat::kPacked);
  budgeted.ram_budget = 4096;  // most compressed blocks on the disk tier
  const auto f32 = with_format(KvFormat::kF32), bf16 = with_format(KvFormat::kBF16),
             packed = with_format(KvFormat::kPacked);
  return {
      {"tiny-a f32", tiny, {f32, f32, f32}, {0, 9, 40}},
      {"tiny-a bf16", tiny, {bf16, bf16}, {3, 21}},
      {"tiny-a-q packed", tiny_q, {packed, packed, packed, packed}, {1, 17, 33, 64}},
      {"tiny-a-q official", tiny_official, {packed, packed, packed}, {0, 12, 50}},
      {"V4-shaped, mixed formats", v4, {f32, packed, bf16, packed}, {0, 130, 300, 517}},
      {"V4-shaped, checkpoints and disk tier", v4, {checkpointed, budgeted, packed}, {40, 900, 7}},
      {"V4-shaped official", v4_official, {packed, packed, packed}, {0, 129, 400}},
  };
}

}  // namespace

TEST_CASE("decode batch: every session gets the bits of its own one-token appends",
          "[session][batch]") {
  for (const BatchCase& bc : batch_cases()) {
    INFO(bc.name);
    const int64_t vocab = bc.model->config().vocab_size;
    const size_t n = bc.prompts.size();
    std::vector<std::unique_ptr<Session>> batched, solo;
    for (size_t i = 0; i < n; ++i) {
      batched.push_back(session_after(bc.model, bc.options[i], bc.prompts[i], int32_t(i)));
      solo.push_back(session_after(bc.model, bc.options[i], bc.prompts[i], int32_t(i)));
    }
    std::vector<Session*> sessions;
    for (auto& s : batched) sessions.push_back(s.get());
    dsv4::AppendOptions last;
    last.output = dsv4::OutputMode::kLast;
    constexpr int kSteps = 20;
    for (int step = 0; step < kSteps; ++step) {
      std::vector<int32_t> tokens(n);
      for (size_t i = 0; i < n; ++i) tokens[i] = int32_t((step * 37 + int(i) * 101 + 3) % vocab);
      std::vector<float> logits(n * size_t(vocab));
      REQUIRE(Session::decode_batch(sessions, tokens, last, logits.data()).is_ok());
      REQUIRE(all_finite(logits));
      for (size_t i = 0; i < n; ++i) {
        std::vector<float> alone(static_cast<size_t>(vocab));
        REQUIRE(solo[i]->append({&tokens[i], 1}, last, alone.data()).is_ok());
        INFO("session " << i << " at position " << solo[i]->position() << ", step " << step);
        REQUIRE(std::memcmp(alone.data(), logits.data() + i * size_t(vocab),
                            alone.size() * sizeof(float)) == 0);
        REQUIRE(batched[i]->position() == solo[i]->position());
        REQUIRE(batched[i]->tokens() == solo[i]->tokens());
      }
    }
    // The caches agree too: a longer continuation after the batch stays identical.
    for (size_t i = 0; i < n; ++i) {
      const std::vector<int32_t> more = ids(9, vocab, 5);
      std::vector<float> a(more.size() * size_t(vocab)), b(a.size());
      dsv4::AppendOptions all;
      all.output = dsv4::OutputMode::kAll;
      REQUIRE(batched[i]->append(more, all, a.data()).is_ok());
      REQUIRE(solo[i]->append(more, all, b.data()).is_ok());
      REQUIRE(all_finite(a));
      REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("decode batch: a failed batch leaves every session as it was", "[session][batch]") {
  const auto model = v4_shaped();
  const int64_t vocab = model->config().vocab_size;
  dsv4::SessionOptions limited = with_format(KvFormat::kPacked);
  limited.max_positions = 31;
  auto a = session_after(model, with_format(KvFormat::kPacked), 200, 1);
  auto b = session_after(model, with_format(KvFormat::kF32), 0, 2);
  auto full = session_after(model, limited, 31, 3);
  auto control_a = a->fork().value(), control_b = b->fork().value();
  std::vector<float> logits(3 * size_t(vocab));
  dsv4::AppendOptions last;
  last.output = dsv4::OutputMode::kLast;

  auto refused = [&](std::vector<Session*> sessions, std::vector<int32_t> tokens,
                     dsv4::StatusCode code, const dsv4::AppendOptions& options) {
    const dsv4::Status s = Session::decode_batch(sessions, tokens, options, logits.data());
    INFO(s.message());
    REQUIRE(s.code() == code);
    REQUIRE(!s.message().empty());
    REQUIRE(a->position() == 200);
    REQUIRE(b->position() == 0);
  };
  refused({}, {}, dsv4::StatusCode::kInvalidArgument, last);
  refused({a.get(), b.get()}, {1}, dsv4::StatusCode::kInvalidArgument, last);
  refused({a.get(), a.get()}, {1, 2}, dsv4::StatusCode::kInvalidArgument, last);
  refused({a.get(), nullptr}, {1, 2}, dsv4::StatusCode::kInvalidArgument, last);
  refused({a.get(), b.get()}, {1, int32_t(vocab)}, dsv4::StatusCode::kOutOfRange, last);
  refused({a.get(), b.get(), full.get()}, {1, 2, 3}, dsv4::StatusCode::kOutOfRange, last);
  auto other_model = Session::create(v4_shaped()).value();
  refused({a.get(), other_model.get()}, {1, 2}, dsv4::StatusCode::kInvalidArgument, last);

  // Cancelled mid-pass (after the first layer), and out of memory mid-pass: rolled back.
  int asked = 0;
  dsv4::AppendOptions cancelling = last;
  cancelling.abort_user = &asked;
  cancelling.should_abort = [](void* user) { return ++*static_cast<int*>(user) > 1; };
  refused({a.get(), b.get()}, {1, 2}, dsv4::StatusCode::kCancelled, cancelling);
  int failed = 0;
  for (int64_t countdown : {0, 1, 3}) {
    dsv4::set_cache_allocation_failure_countdown(countdown);
    const dsv4::Status s = Session::decode_batch(std::vector<Session*>{a.get(), b.get()},
                                                 std::vector<int32_t>{1, 2}, last, logits.data());
    dsv4::set_cache_allocation_failure_countdown(-1);
    if (s.is_ok()) break;  // no allocation left to fail: the step went through
    REQUIRE(s.code() == dsv4::StatusCode::kOutOfMemory);
    REQUIRE(a->position() == 200);
    REQUIRE(b->position() == 0);
    ++failed;
  }
  REQUIRE(failed > 0);  // the injected failure did happen
  // Whatever happened above, each session continues exactly as its untouched control.
  for (auto [s, control] : {std::pair{a.get(), control_a.get()}, {b.get(), control_b.get()}}) {
    if (s->position() > control->position()) {
      std::vector<float> skipped(static_cast<size_t>(vocab));
      REQUIRE(control->append({&s->tokens().back(), 1}, last, skipped.data()).is_ok());
    }
    const std::vector<int32_t> more = ids(5, vocab, 9);
    std::vector<float> x(more.size() * size_t(vocab)), y(x.size());
    dsv4::AppendOptions all;
    all.output = dsv4::OutputMode::kAll;
    REQUIRE(s->append(more, all, x.data()).is_ok());
    REQUIRE(control->append(more, all, y.data()).is_ok());
    REQUIRE(all_finite(x));
    REQUIRE(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
  }
}
