// The whole model against the official_ref emulator's outputs. Official numerics: the shipped
// tiny-a-q reference (official.safetensors, official_decisions.safetensors) and the
// configurations make_official_model writes and the emulator runs in ctest (other widths, c not a
// power of two, nope widths below 64, several FP8 scale blocks, HCA first, prompts past several
// compression boundaries, one mHC stream, a top-k above the entry count). Exact numerics: the same
// configurations against the emulator's --exact run (every rounding point off), a second,
// independent reference besides the shipped goldens.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>

#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/session.hpp"
#include "test_support.hpp"

namespace {

using dsv4::test::max_abs_diff;

namespace fs = std::filesystem;

// The acceptance bound on logits, and the regression bound near what the code achieves (the
// recipe is followed exactly: the logits agree to the last bit on every reference so far).
constexpr float kAcceptance = 1e-3f;
constexpr float kRegression = 1e-5f;
// The exact mode against the emulator's --exact run (fp32 sums in another order, float64 in
// places): achieved max 3.0e-6 on these configurations.
constexpr float kExactRegression = 1e-5f;

// The configurations make_official_model writes and the emulator runs in ctest.
constexpr const char* kGeneratedConfigurations[] = {"narrow", "wide", "long", "compact"};

struct Reference {
  std::vector<int32_t> ids;
  std::vector<float> prefill, decode;  // [S, V], [N − S, V]
  int64_t prompt_len = 0;
  // "layers.L.indexer_topk" / "layers.L.router_topk" -> [N, k] rows (−1 = none), and k.
  std::map<std::string, std::pair<std::vector<int32_t>, int64_t>> decisions;
};

std::vector<int32_t> read_i32(const dsv4::Checkpoint& file, const std::string& name) {
  std::vector<int32_t> out;
  for (float v : dsv4::test::read_f32(file, name)) out.push_back(int32_t(v));
  return out;
}

Reference load_reference(const fs::path& logits_file, const fs::path& decisions_file,
                         int64_t vocab) {
  Reference r;
  auto logits = dsv4::Checkpoint::open(logits_file.string());
  REQUIRE(logits.is_ok());
  r.ids = read_i32(logits.value(), "input_ids");
  r.prefill = dsv4::test::read_f32(logits.value(), "prefill_logits");
  r.decode = dsv4::test::read_f32(logits.value(), "decode_logits");
  r.prompt_len = int64_t(r.prefill.size()) / vocab;
  REQUIRE(int64_t(r.ids.size()) * vocab == int64_t(r.prefill.size() + r.decode.size()));
  if (decisions_file.empty()) return r;  // the --exact run writes none
  auto decisions = dsv4::Checkpoint::open(decisions_file.string());
  REQUIRE(decisions.is_ok());
  for (const std::string& name : decisions.value().names()) {
    std::vector<int32_t> rows = read_i32(decisions.value(), name);
    const int64_t k = int64_t(rows.size()) / int64_t(r.ids.size());
    r.decisions[name] = {std::move(rows), k};
  }
  return r;
}

// Rows of `trace` (positions [first, first + T)) whose decisions differ from the reference.
int64_t count_decision_mismatches(const Reference& ref, const dsv4::ForwardTrace& trace,
                                  int64_t first, int64_t n_tokens, int64_t index_topk,
                                  int64_t experts_per_tok) {
  int64_t mismatches = 0;
  for (const auto& [name, table] : ref.decisions) {
    const int layer = std::stoi(name.substr(7));
    const bool indexer = name.find("indexer") != std::string::npos;
    const std::vector<int32_t>& mine =
        indexer ? trace.decisions[size_t(layer)].indexer : trace.decisions[size_t(layer)].router;
    const int64_t width = indexer ? index_topk : experts_per_tok;
    REQUIRE(int64_t(mine.size()) == n_tokens * width);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const int32_t* want = table.first.data() + (first + t) * table.second;
      const int32_t* got = mine.data() + t * width;
      bool same = true;
      for (int64_t j = 0; j < width; ++j)
        same = same && got[j] == (j < table.second ? want[j] : -1);
      if (!same) {
        ++mismatches;
        UNSCOPED_INFO(name << " differs at position " << first + t);
      }
    }
  }
  return mismatches;
}

// Prefill of the reference's prompt (every row's logits), then teacher-forced decode of the
// rest: the largest |diff| against the reference in each phase (infinite for a non-finite logit,
// see max_abs_diff). `on_trace`, when given, sees each append's trace with its first position and
// token count.
struct ReplayErrors {
  float prefill = 0.0f, decode = 0.0f;
};
using TraceCheck = std::function<void(const dsv4::ForwardTrace&, int64_t first, int64_t n)>;
ReplayErrors replay_reference(dsv4::Session& session, const Reference& ref, int64_t vocab,
                              const TraceCheck& on_trace = {}) {
  dsv4::ForwardTrace trace;
  dsv4::ForwardTrace* const traced = on_trace ? &trace : nullptr;
  dsv4::AppendOptions all;
  all.output = dsv4::OutputMode::kAll;
  std::vector<float> logits(ref.prefill.size());
  REQUIRE(
      session.append({ref.ids.data(), size_t(ref.prompt_len)}, all, logits.data(), traced).is_ok());
  ReplayErrors errors;
  errors.prefill = max_abs_diff(logits.data(), ref.prefill.data(), logits.size());
  if (on_trace) on_trace(trace, 0, ref.prompt_len);
  std::vector<float> step(static_cast<size_t>(vocab));
  for (int64_t t = ref.prompt_len; t < int64_t(ref.ids.size()); ++t) {
    REQUIRE(session.append({ref.ids.data() + t, 1}, step.data(), traced).is_ok());
    errors.decode = std::max(
        errors.decode,
        max_abs_diff(step.data(), ref.decode.data() + (t - ref.prompt_len) * vocab, size_t(vocab)));
    if (on_trace) on_trace(trace, t, 1);
  }
  return errors;
}

// Official prefill of the prompt, then teacher-forced decode: logits and decisions.
void check_against_reference(const fs::path& checkpoint, const fs::path& logits_file,
                             const fs::path& decisions_file) {
  dsv4::ModelLoadOptions options;
  options.numerics = dsv4::Numerics::kOfficial;
  auto loaded = dsv4::Model::load(checkpoint.string(), options);
  REQUIRE(loaded.is_ok());
  auto model = loaded.value();
  const dsv4::ModelConfig& c = model->config();
  const int64_t V = c.vocab_size;
  const Reference ref = load_reference(logits_file, decisions_file, V);
  auto session = dsv4::Session::create(model).value();
  REQUIRE(session->kv_format() == dsv4::KvFormat::kPacked);

  int64_t mismatches = 0;
  const ReplayErrors errors = replay_reference(
      *session, ref, V, [&](const dsv4::ForwardTrace& trace, int64_t first, int64_t n) {
        mismatches +=
            count_decision_mismatches(ref, trace, first, n, c.index_topk, c.num_experts_per_tok);
      });
  const float prefill_err = errors.prefill, decode_err = errors.decode;
  WARN(checkpoint.filename().string()
       << ": official prefill max |diff| " << prefill_err << ", decode " << decode_err << ", "
       << mismatches << " decision rows differ (of " << ref.decisions.size() << " tables × "
       << ref.ids.size() << " positions)");
  CHECK(mismatches == 0);
  CHECK(prefill_err < kAcceptance);
  CHECK(decode_err < kAcceptance);
  CHECK(prefill_err <= kRegression);
  CHECK(decode_err <= kRegression);
}

}  // namespace

TEST_CASE("official numerics: tiny-a-q reproduces official.safetensors and its decisions",
          "[official]") {
  const fs::path dir = dsv4::test::golden_dir("tiny-a-q");
  check_against_reference(dir, dir / "official.safetensors",
                          dir / "official_decisions.safetensors");
}

TEST_CASE("official numerics: generated configurations reproduce the emulator run on them",
          "[official]") {
  for (const char* name : kGeneratedConfigurations) {
    const fs::path dir = fs::path(DSV4_OFFICIAL_MODELS) / name;
    INFO("configuration " << name << " in " << dir);
    REQUIRE(fs::exists(dir / "official.safetensors"));
    check_against_reference(dir, dir / "official.safetensors",
                            dir / "official_decisions.safetensors");
  }
}

TEST_CASE("exact numerics: generated configurations match the emulator's exact run",
          "[official][exact]") {
  // Prefill of the prompt with every row's logits, then teacher-forced decode, in the default
  // (exact) numerics with its fast kernels, against official_ref.py --exact (max_abs_diff counts
  // a non-finite logit as an infinite difference).
  for (const char* name : kGeneratedConfigurations) {
    const fs::path dir = fs::path(DSV4_OFFICIAL_MODELS) / name;
    INFO("configuration " << name << " in " << dir);
    REQUIRE(fs::exists(dir / "exact.safetensors"));
    auto model = dsv4::Model::load(dir.string()).value();
    const int64_t V = model->config().vocab_size;
    const Reference ref = load_reference(dir / "exact.safetensors", {}, V);
    auto session = dsv4::Session::create(model).value();
    const ReplayErrors errors = replay_reference(*session, ref, V);
    const float prefill_err = errors.prefill, decode_err = errors.decode;
    WARN(name << ": exact prefill max |diff| " << prefill_err << ", decode " << decode_err);
    CHECK(prefill_err < kAcceptance);
    CHECK(decode_err < kAcceptance);
    CHECK(prefill_err <= kExactRegression);
    CHECK(decode_err <= kExactRegression);
  }
}

TEST_CASE("official numerics: prefill, chunked prefill and decode give identical logits",
          "[official]") {
  // tiny-a-q's key lists (window 16 + top-k 8) fit in one 64-key block of the sparse-attention
  // kernel, so the official prefill and decode layouts read the same blocks: bit-identical.
  dsv4::ModelLoadOptions options;
  options.numerics = dsv4::Numerics::kOfficial;
  auto model = dsv4::Model::load(dsv4::test::golden_dir("tiny-a-q").string(), options).value();
  const int64_t V = model->config().vocab_size, n = 90;
  const Reference ref =
      load_reference(dsv4::test::golden_dir("tiny-a-q") / "official.safetensors",
                     dsv4::test::golden_dir("tiny-a-q") / "official_decisions.safetensors", V);
  dsv4::AppendOptions all;
  all.output = dsv4::OutputMode::kAll;
  auto run = [&](int64_t chunk) {
    dsv4::SessionOptions so;
    so.max_chunk = chunk;
    auto session = dsv4::Session::create(model, so).value();
    std::vector<float> logits(size_t(n * V));
    REQUIRE(session->append({ref.ids.data(), size_t(n)}, all, logits.data()).is_ok());
    return logits;
  };
  const std::vector<float> whole = run(n);
  for (int64_t chunk : {1, 7, 33}) {
    INFO("chunks of " << chunk);
    const std::vector<float> chunked = run(chunk);
    CHECK(max_abs_diff(whole.data(), chunked.data(), whole.size()) == 0.0f);
  }
}

TEST_CASE("official numerics: deviation from the exact golden on tiny-a-q (reported)",
          "[official]") {
  // The two modes are different computations; this records how far dsv4's official prefill is
  // from the exact golden (docs/numerics.md) and guards the figure.
  const dsv4::test::Golden exact = dsv4::test::load_golden("tiny-a-q");
  dsv4::ModelLoadOptions options;
  options.numerics = dsv4::Numerics::kOfficial;
  auto model = dsv4::Model::load(dsv4::test::golden_dir("tiny-a-q").string(), options).value();
  auto session = dsv4::Session::create(model).value();
  dsv4::AppendOptions all;
  all.output = dsv4::OutputMode::kAll;
  std::vector<float> logits(exact.prefill_logits.size());
  REQUIRE(session->append({exact.input_ids.data(), size_t(exact.prompt_len)}, all, logits.data())
              .is_ok());
  const dsv4::test::Deviation d =
      dsv4::test::deviation(logits.data(), exact.prefill_logits.data(), logits.size());
  WARN("tiny-a-q prefill, official vs exact golden: max |diff| " << d.max << ", mean " << d.mean);
  CHECK(d.mean <= 0.25);
  CHECK(d.max < 3.0f);
}
