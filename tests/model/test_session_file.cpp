// Saved sessions (Session::save / load / fork): a restored session continues exactly as the
// uninterrupted one, in every cache format and numerics mode; damaged, truncated, foreign and
// newer files are refused with a clear status; a failed save leaves the previous file intact.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>

#include "dsv4/core/checksum.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/memory_plan.hpp"
#include "dsv4/model/prefix_store.hpp"
#include "dsv4/model/session.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using dsv4::KvFormat;
using dsv4::Session;
using dsv4::Status;

std::shared_ptr<const dsv4::Model> load(const std::string& name,
                                        dsv4::Numerics numerics = dsv4::Numerics::kExact) {
  return dsv4::test::golden_model(name, numerics);
}

std::vector<int32_t> ids(int64_t n, int64_t vocab, int32_t salt = 0) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = int32_t((i * 131 + 7 + salt) % vocab);
  return out;
}

// Logits of appending `tokens` to `session`, one row per token.
std::vector<float> continue_with(Session& session, const std::vector<int32_t>& tokens) {
  std::vector<float> logits(tokens.size() * size_t(session.model().config().vocab_size));
  dsv4::AppendOptions all;
  all.output = dsv4::OutputMode::kAll;
  REQUIRE(session.append(tokens, all, logits.data()).is_ok());
  REQUIRE(std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); }));
  return logits;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace

TEST_CASE("checksum: CRC-32C and FNV-1a check values", "[session-file]") {
  CHECK(dsv4::crc32c(0, "123456789", 9) == 0xE3069283u);
  // Continuing over pieces gives the same as one pass.
  CHECK(dsv4::crc32c(dsv4::crc32c(0, "12345", 5), "6789", 4) == 0xE3069283u);
  CHECK(dsv4::fnv1a64(dsv4::kFnvOffset, "a") == 0xaf63dc4c8601ec8cull);
  // The hardware and the table paths agree on every length and alignment.
  std::vector<uint8_t> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 131 + 7);
  for (size_t offset : {size_t(0), size_t(1), size_t(5)})
    for (size_t n :
         {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(100), size_t(990)})
      CHECK(dsv4::crc32c(3, data.data() + offset, n) ==
            dsv4::crc32c_portable(3, data.data() + offset, n));
  CHECK(dsv4::crc32c_portable(0, "123456789", 9) == 0xE3069283u);
}

TEST_CASE("session file: save, load and continue is bit-identical in every format and mode",
          "[session-file]") {
  dsv4::test::TempDir dir("session");
  struct Case {
    const char* model;
    dsv4::Numerics numerics;
    KvFormat format;
  };
  for (const Case& k : {Case{"tiny-a", dsv4::Numerics::kExact, KvFormat::kF32},
                        Case{"tiny-a", dsv4::Numerics::kExact, KvFormat::kBF16},
                        Case{"tiny-a-q", dsv4::Numerics::kExact, KvFormat::kPacked},
                        Case{"tiny-a-q", dsv4::Numerics::kOfficial, KvFormat::kPacked}}) {
    INFO(k.model << ", format " << dsv4::kv_format_name(k.format) << ", numerics "
                 << int(k.numerics));
    auto model = load(k.model, k.numerics);
    const int64_t V = model->config().vocab_size;
    // 137 tokens: the window ring has wrapped, and every compressor holds an incomplete window.
    const std::vector<int32_t> prompt = ids(137, V), more = ids(23, V, 5);
    dsv4::SessionOptions so;
    so.kv_format = k.format;
    auto uninterrupted = Session::create(model, so).value();
    continue_with(*uninterrupted, prompt);
    const std::vector<float> want = continue_with(*uninterrupted, more);

    auto saved = Session::create(model, so).value();
    continue_with(*saved, prompt);
    const fs::path file = dir.path() / "s.dsv4session";
    REQUIRE(saved->save(file.string()).is_ok());
    auto restored = Session::load(model, file.string());
    REQUIRE(restored.is_ok());
    CHECK(restored.value()->position() == 137);
    CHECK(restored.value()->tokens() == prompt);
    CHECK(restored.value()->kv_format() == k.format);
    const std::vector<float> got = continue_with(*restored.value(), more);
    CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
    // Memory accounting agrees too.
    CHECK(restored.value()->memory().total_used() == uninterrupted->memory().total_used());
  }
}

TEST_CASE("session file: fork gives independent continuations of one prompt", "[session-file]") {
  auto model = load("tiny-a-q");
  const int64_t V = model->config().vocab_size;
  const std::vector<int32_t> prompt = ids(90, V), a = ids(12, V, 1), b = ids(12, V, 2);
  dsv4::SessionOptions so;
  so.kv_format = KvFormat::kPacked;
  auto reference_a = Session::create(model, so).value();
  continue_with(*reference_a, prompt);
  const std::vector<float> want_a = continue_with(*reference_a, a);
  auto reference_b = Session::create(model, so).value();
  continue_with(*reference_b, prompt);
  const std::vector<float> want_b = continue_with(*reference_b, b);

  auto original = Session::create(model, so).value();
  continue_with(*original, prompt);
  auto forked = original->fork();
  REQUIRE(forked.is_ok());
  // Copy-on-write: right after the fork every block is shared.
  size_t shared = 0;
  for (int64_t l = 0; l < forked.value()->cache().n_layers(); ++l)
    shared += forked.value()->cache().layer(l).compressed.bytes_shared();
  CHECK(shared > 0);
  const std::vector<float> got_b = continue_with(*forked.value(), b);
  const std::vector<float> got_a = continue_with(*original, a);  // unaffected by the fork's tokens
  CHECK(std::memcmp(got_a.data(), want_a.data(), want_a.size() * 4) == 0);
  CHECK(std::memcmp(got_b.data(), want_b.data(), want_b.size() * 4) == 0);
  CHECK(forked.value()->position() == 102);
  CHECK(original->position() == 102);
}

TEST_CASE("session file: a fork of a long session shares its blocks until written",
          "[session-file]") {
  const dsv4::ModelConfig c = dsv4::demo_model_config(4);
  auto model = dsv4::Model::from_weights(
                   c, dsv4::random_weights(c, 3, dsv4::RandomWeightFormats::official()))
                   .value();
  dsv4::SessionOptions so;
  so.kv_format = KvFormat::kPacked;
  auto original = Session::create(model, so).value();
  REQUIRE(original->fill_synthetic_cache(20000, 9).is_ok());
  auto reference = Session::create(model, so).value();
  REQUIRE(reference->fill_synthetic_cache(20000, 9).is_ok());
  auto fork = original->fork().value();
  auto shared = [](const Session& s) {
    size_t bytes = 0;
    for (int64_t l = 0; l < s.cache().n_layers(); ++l)
      bytes +=
          s.cache().layer(l).compressed.bytes_shared() + s.cache().layer(l).indexer.bytes_shared();
    return bytes;
  };
  const size_t before = shared(*fork);
  CHECK(before >=
        size_t(0.9 * double(original->memory().total_used(dsv4::CacheKind::kCompressed))));
  const std::vector<int32_t> a = ids(5, c.vocab_size, 1), b = ids(5, c.vocab_size, 2);
  const std::vector<float> got_b = continue_with(*fork, b);
  const std::vector<float> got_a = continue_with(*original, a);
  const std::vector<float> want_a = continue_with(*reference, a);
  CHECK(std::memcmp(got_a.data(), want_a.data(), want_a.size() * 4) == 0);
  // Only the blocks written since (the partial last ones) were copied; the rest stay shared.
  CHECK(shared(*fork) > 0);
  CHECK(shared(*fork) < before);
  CHECK(shared(*fork) >= before / 2);
  (void)got_b;
}

TEST_CASE("session file: a long synthetic session round-trips", "[session-file]") {
  auto model =
      dsv4::Model::from_weights(dsv4::demo_model_config(4),
                                dsv4::random_weights(dsv4::demo_model_config(4), 3,
                                                     dsv4::RandomWeightFormats::official()))
          .value();
  dsv4::test::TempDir dir("session-long");
  dsv4::SessionOptions so;
  so.kv_format = KvFormat::kPacked;
  auto a = Session::create(model, so).value();
  REQUIRE(a->fill_synthetic_cache(20000, 9).is_ok());
  const fs::path file = dir.path() / "long.dsv4session";
  REQUIRE(a->save(file.string()).is_ok());
  auto b = Session::load(model, file.string()).value();
  const std::vector<int32_t> more = ids(3, model->config().vocab_size);
  const std::vector<float> want = continue_with(*a, more), got = continue_with(*b, more);
  CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
}

namespace {

// A V4-shaped model (window 128, CSA top-128, HCA 1/128, hash layers) with official-format
// weights: its rebuild span (509 tokens) is shorter than the sessions below, so a rebuild starts
// mid-context and recomputes rows whose own windows it does not have.
std::shared_ptr<const dsv4::Model> demo_model(dsv4::Numerics numerics = dsv4::Numerics::kExact) {
  dsv4::ModelConfig c = dsv4::demo_model_config(4);
  c.vocab_size = 1024;  // the head of the real vocabulary would cost more than the layers
  dsv4::ModelLoadOptions options;
  options.numerics = numerics;
  return dsv4::Model::from_weights(
             c, dsv4::random_weights(c, 7, dsv4::RandomWeightFormats::official()), options)
      .value();
}

struct RewindCase {
  std::string name;
  std::shared_ptr<const dsv4::Model> model;
  KvFormat format;
  int64_t prompt;  // tokens of the first append
};

std::vector<RewindCase> rewind_cases() {
  return {
      {"tiny-a f32", load("tiny-a"), KvFormat::kF32, 137},
      {"tiny-a bf16", load("tiny-a"), KvFormat::kBF16, 137},
      {"tiny-a-q packed", load("tiny-a-q"), KvFormat::kPacked, 137},
      {"tiny-a-q official", load("tiny-a-q", dsv4::Numerics::kOfficial), KvFormat::kPacked, 137},
      {"demo packed", demo_model(), KvFormat::kPacked, 700},
      {"demo f32", demo_model(), KvFormat::kF32, 700}};
}

}  // namespace

TEST_CASE("session truncate: a rewound session continues as one that stopped there",
          "[session-file][truncate]") {
  // Without window checkpoints every rewind rebuilds from the token ids; with one every 32
  // tokens, rewinds at or after the latest checkpoint start there.
  for (const int64_t interval : {int64_t(0), int64_t(32)})
    for (const RewindCase& k : rewind_cases()) {
      // The sanitizer pass: with and without checkpoints on the official and the V4-shaped
      // packed cases (the plain pass runs all six).
      if (dsv4::test::sanitized_run() && k.name != "tiny-a-q official" && k.name != "demo packed")
        continue;
      INFO(k.name << ", window checkpoint interval " << interval);
      const int64_t V = k.model->config().vocab_size;
      const std::vector<int32_t> prompt = ids(k.prompt, V), extra = ids(60, V, 3),
                                 more = ids(12, V, 9);
      dsv4::SessionOptions so;
      so.kv_format = k.format;
      dsv4::SessionOptions rewound_options = so;
      rewound_options.window_checkpoint_interval = interval;
      auto rewound = Session::create(k.model, rewound_options).value();
      continue_with(*rewound, prompt);
      // Decode steps and a chunk past the prompt, then back into them, then into the prompt.
      for (int32_t t : std::vector<int32_t>(extra.begin(), extra.begin() + 20))
        continue_with(*rewound, {t});
      continue_with(*rewound, std::vector<int32_t>(extra.begin() + 20, extra.end()));
      for (const int64_t keep : {int64_t(45), int64_t(7), int64_t(0), int64_t(-30)}) {
        // The official numerics pad the first chunk's key lists by its own length, so a session
        // that stopped inside it is a different computation: there, rewind past the prompt only.
        if (keep < 0 && k.model->official()) continue;
        const int64_t n = k.prompt + keep;
        INFO("truncate to " << n << " (rebuild span " << rewound->rebuild_span() << ")");
        REQUIRE(rewound->truncate(n).is_ok());
        CHECK(rewound->position() == n);
        auto stopped = Session::create(k.model, so).value();
        if (keep >= 0) {
          continue_with(*stopped, prompt);
          if (keep > 0)
            continue_with(*stopped, std::vector<int32_t>(extra.begin(), extra.begin() + keep));
        } else {
          continue_with(*stopped, std::vector<int32_t>(prompt.begin(), prompt.begin() + n));
        }
        CHECK(rewound->tokens() == stopped->tokens());
        CHECK(rewound->memory().total_used() == stopped->memory().total_used());
        // Both continue, and the rewound one is still rewindable afterwards.
        auto probe = rewound->fork().value();
        const std::vector<float> got = continue_with(*probe, more);
        const std::vector<float> want = continue_with(*stopped, more);
        CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
        // Saved after the rewind without its window (the strategy that recomputes the most),
        // restored, it continues the same.
        if (keep == 7) {
          dsv4::test::TempDir dir("session-rewound");
          dsv4::SaveOptions none;
          none.swa_strategy = dsv4::SwaStrategy::kNone;
          const fs::path file = dir.path() / "rewound.dsv4session";
          REQUIRE(rewound->save(file.string(), none).is_ok());
          auto restored = Session::load(k.model, file.string(), so).value();
          const std::vector<float> again = continue_with(*restored, more);
          CHECK(std::memcmp(again.data(), want.data(), want.size() * 4) == 0);
        }
      }
    }
}

TEST_CASE("session file: every SWA strategy restores to the same bits", "[session-file][swa]") {
  dsv4::test::TempDir dir("session-swa");
  for (const RewindCase& k : rewind_cases()) {
    INFO(k.name);
    const int64_t V = k.model->config().vocab_size;
    const std::vector<int32_t> prompt = ids(k.prompt, V), extra = ids(23, V, 4),
                               more = ids(9, V, 8);
    dsv4::SessionOptions so;
    so.kv_format = k.format;
    auto saved = Session::create(k.model, so).value();
    continue_with(*saved, prompt);
    for (int32_t t : extra) continue_with(*saved, {t});  // decode steps after the prompt
    auto reference = saved->fork().value();
    const std::vector<float> want = continue_with(*reference, more);
    struct Strategy {
      dsv4::SwaStrategy strategy;
      int64_t interval;
    };
    std::vector<uintmax_t> sizes;
    for (const Strategy& st :
         {Strategy{dsv4::SwaStrategy::kFull, 0}, Strategy{dsv4::SwaStrategy::kCheckpoint, 64},
          Strategy{dsv4::SwaStrategy::kCheckpoint, 5000}, Strategy{dsv4::SwaStrategy::kNone, 0}}) {
      INFO("strategy " << int(st.strategy) << " interval " << st.interval);
      dsv4::SaveOptions options;
      options.swa_strategy = st.strategy;
      options.checkpoint_interval = st.interval;
      const fs::path file = dir.path() / "s.dsv4session";
      REQUIRE(saved->save(file.string(), options).is_ok());
      sizes.push_back(fs::file_size(file));
      auto restored = Session::load(k.model, file.string(), so);
      REQUIRE(restored.is_ok());
      CHECK(restored.value()->position() == saved->position());
      CHECK(restored.value()->memory().total_used() == saved->memory().total_used());
      const std::vector<float> got = continue_with(*restored.value(), more);
      CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
    }
    // Without the rings and compressor states the file is smaller.
    CHECK(sizes[3] < sizes[0]);
    // A session that keeps window checkpoints at the interval writes the same checkpoint file
    // without rebuilding (its checkpoint is exact), and continues the same.
    dsv4::SessionOptions keeping = so;
    keeping.window_checkpoint_interval = 64;
    auto kept = Session::create(k.model, keeping).value();
    continue_with(*kept, prompt);
    for (int32_t t : extra) continue_with(*kept, {t});
    dsv4::SaveOptions checkpoint;
    checkpoint.swa_strategy = dsv4::SwaStrategy::kCheckpoint;
    checkpoint.checkpoint_interval = 64;
    REQUIRE(saved->save((dir.path() / "rebuilt").string(), checkpoint).is_ok());
    REQUIRE(kept->save((dir.path() / "kept").string(), checkpoint).is_ok());
    CHECK(read_bytes(dir.path() / "rebuilt") == read_bytes(dir.path() / "kept"));
    auto from_kept = Session::load(k.model, (dir.path() / "kept").string(), keeping).value();
    const std::vector<float> got_kept = continue_with(*kept, more);
    const std::vector<float> got_loaded = continue_with(*from_kept, more);
    CHECK(std::memcmp(got_kept.data(), want.data(), want.size() * 4) == 0);
    CHECK(std::memcmp(got_loaded.data(), want.data(), want.size() * 4) == 0);
  }
}

TEST_CASE("session file: a checkpoint strategy needs an interval", "[session-file][swa]") {
  dsv4::test::TempDir dir("session-swa-bad");
  auto model = load("tiny-a");
  auto s = Session::create(model).value();
  continue_with(*s, ids(20, model->config().vocab_size));
  dsv4::SaveOptions options;
  options.swa_strategy = dsv4::SwaStrategy::kCheckpoint;
  CHECK(s->save((dir.path() / "x").string(), options).code() == dsv4::StatusCode::kInvalidArgument);
  options.swa_strategy = dsv4::SwaStrategy(7);
  CHECK(s->save((dir.path() / "x").string(), options).code() == dsv4::StatusCode::kInvalidArgument);
  CHECK_FALSE(fs::exists(dir.path() / "x"));
}

TEST_CASE("session truncate: bad counts are refused and leave the session as it was",
          "[session-file][truncate]") {
  auto model = load("tiny-a");
  auto s = Session::create(model).value();
  continue_with(*s, ids(40, model->config().vocab_size));
  CHECK(s->truncate(41).code() == dsv4::StatusCode::kOutOfRange);
  CHECK(s->truncate(-1).code() == dsv4::StatusCode::kOutOfRange);
  CHECK(s->position() == 40);
  REQUIRE(s->truncate(40).is_ok());
  CHECK(s->position() == 40);
  REQUIRE(s->truncate(0).is_ok());
  CHECK(s->position() == 0);
  CHECK(s->memory().total_used() == Session::create(model).value()->memory().total_used());
}

TEST_CASE("session file: damaged, truncated, foreign and newer files are refused",
          "[session-file]") {
  dsv4::test::TempDir dir("session-bad");
  auto model = load("tiny-a");
  auto session = Session::create(model).value();
  continue_with(*session, ids(70, model->config().vocab_size));
  const fs::path good = dir.path() / "good.dsv4session", bad = dir.path() / "bad.dsv4session";
  REQUIRE(session->save(good.string()).is_ok());
  const std::vector<uint8_t> bytes = read_bytes(good);
  REQUIRE(bytes.size() > 1000);

  auto expect = [&](const std::vector<uint8_t>& content, dsv4::StatusCode code, const char* words) {
    write_bytes(bad, content);
    auto loaded = Session::load(model, bad.string());
    REQUIRE_FALSE(loaded.is_ok());
    CHECK(loaded.status().code() == code);
    CHECK(loaded.status().message().find(words) != std::string::npos);
    INFO(loaded.status().message());
  };
  // A flipped bit anywhere: header, a section header, a payload, the end.
  for (size_t at : {size_t(3), size_t(20), size_t(70), bytes.size() / 2, bytes.size() - 20}) {
    INFO("byte " << at << " flipped");
    std::vector<uint8_t> damaged = bytes;
    damaged[at] ^= 0x10;
    write_bytes(bad, damaged);
    auto loaded = Session::load(model, bad.string());
    REQUIRE_FALSE(loaded.is_ok());
    CHECK(loaded.status().code() == dsv4::StatusCode::kCorruptFile);
  }
  // Truncated at every kind of boundary, and extended.
  for (size_t keep : {size_t(0), size_t(10), size_t(64), size_t(80), bytes.size() / 3,
                      bytes.size() - 8, bytes.size() - 1}) {
    INFO("truncated to " << keep);
    expect({bytes.begin(), bytes.begin() + std::ptrdiff_t(keep)}, dsv4::StatusCode::kCorruptFile,
           "truncated");
  }
  std::vector<uint8_t> extended = bytes;
  extended.push_back(0);
  expect(extended, dsv4::StatusCode::kCorruptFile, "after the end");
  // Another model (same file into tiny-a-q), and the other numerics.
  {
    auto other = load("tiny-a-q");
    auto loaded = Session::load(other, good.string());
    REQUIRE_FALSE(loaded.is_ok());
    CHECK(loaded.status().code() == dsv4::StatusCode::kModelMismatch);
    auto official = load("tiny-a", dsv4::Numerics::kOfficial);
    auto loaded_official = Session::load(official, good.string());
    REQUIRE_FALSE(loaded_official.is_ok());
    CHECK(loaded_official.status().code() == dsv4::StatusCode::kModelMismatch);
    CHECK(loaded_official.status().message().find("numerics") != std::string::npos);
  }
  // A newer format version (header checksum recomputed so only the version is wrong).
  {
    std::vector<uint8_t> newer = bytes;
    const uint32_t version = 3;
    std::memcpy(newer.data() + 8, &version, 4);
    const uint32_t crc = dsv4::crc32c(0, newer.data(), 56);
    std::memcpy(newer.data() + 56, &crc, 4);
    expect(newer, dsv4::StatusCode::kUnsupported, "newer");
  }
  // A file saved without the window whose header claims it has one (checksum recomputed), and
  // the reverse: the window section gives them away.
  {
    dsv4::SaveOptions none;
    none.swa_strategy = dsv4::SwaStrategy::kNone;
    const fs::path windowless = dir.path() / "none.dsv4session";
    REQUIRE(session->save(windowless.string(), none).is_ok());
    for (const auto& [file, strategy] :
         {std::pair{windowless, int32_t(0)}, std::pair{good, int32_t(2)}}) {
      std::vector<uint8_t> lying = read_bytes(file);
      std::memcpy(lying.data() + 32, &strategy, 4);
      const uint32_t crc = dsv4::crc32c(0, lying.data(), 56);
      std::memcpy(lying.data() + 56, &crc, 4);
      expect(lying, dsv4::StatusCode::kCorruptFile, "window section does not fit");
    }
  }
  // Missing files are I/O errors.
  auto missing = Session::load(model, (dir.path() / "none").string());
  CHECK(missing.status().code() == dsv4::StatusCode::kIo);
}

TEST_CASE("session file: a save that fails (disk full) leaves the previous file intact",
          "[session-file]") {
  dsv4::test::TempDir dir("session-full");
  auto model = load("tiny-a");
  const int64_t V = model->config().vocab_size;
  auto session = Session::create(model).value();
  continue_with(*session, ids(40, V));
  const fs::path file = dir.path() / "s.dsv4session";
  REQUIRE(session->save(file.string()).is_ok());
  const std::vector<uint8_t> before = read_bytes(file);
  continue_with(*session, ids(30, V, 3));
  for (int64_t after : {int64_t(0), int64_t(100), int64_t(5000)}) {
    dsv4::set_session_write_failure_after(after);
    const dsv4::Status s = session->save(file.string());
    dsv4::set_session_write_failure_after(-1);
    CHECK(s.code() == dsv4::StatusCode::kIo);
    CHECK(s.message().find("No space left") != std::string::npos);
    CHECK(read_bytes(file) == before);
    // No temporary file is left behind.
    int64_t files = 0;
    for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
    CHECK(files == 1);
  }
  auto restored = Session::load(model, file.string()).value();
  CHECK(restored->position() == 40);
  // A directory that does not exist: an I/O error naming the path.
  const dsv4::Status nowhere = session->save((dir.path() / "no" / "s").string());
  CHECK(nowhere.code() == dsv4::StatusCode::kIo);
}

TEST_CASE("memory plan: the planned cache is what a session holds, per layer and kind", "[plan]") {
  for (KvFormat format : {KvFormat::kF32, KvFormat::kBF16, KvFormat::kPacked}) {
    auto model = load("tiny-a-q");
    dsv4::SessionOptions so;
    so.kv_format = format;
    auto session = Session::create(model, so).value();
    continue_with(*session, ids(301, model->config().vocab_size));
    const dsv4::CacheMemory held = session->memory();
    auto plan = dsv4::plan_memory(model->config(), 301, format, 0);
    REQUIRE(plan.is_ok());
    for (size_t l = 0; l < held.bytes_used.size(); ++l)
      for (int k = 0; k < dsv4::kNumCacheKinds; ++k) {
        INFO("layer " << l << " kind " << k << " format " << dsv4::kv_format_name(format));
        CHECK(plan.value().cache_bytes[l][size_t(k)] == int64_t(held.bytes_used[l][size_t(k)]));
      }
    CHECK(plan.value().total_cache_bytes == int64_t(held.total_used()));
  }
}

TEST_CASE("memory plan: V4-Flash at 1M tokens, the official byte counts and the V3.2 ratio",
          "[plan]") {
  auto packed = dsv4::plan_memory(dsv4::v4_flash_config(), 1 << 20, KvFormat::kPacked, 0).value();
  CHECK(packed.cache_bytes_per_token == Approx(3514.0).epsilon(1e-3));
  CHECK(double(packed.total_cache_bytes) / double(1ll << 30) == Approx(3.45).margin(0.02));
  // Format for format (bf16 entries against a bf16 dense MLA cache) V4 needs about a tenth.
  auto bf16 = dsv4::plan_memory(dsv4::v4_flash_config(), 1 << 20, KvFormat::kBF16, 0).value();
  CHECK(bf16.cache_bytes_per_token == Approx(6880.0).epsilon(1e-3));
  CHECK(double(bf16.total_cache_bytes) / double(bf16.dense_mla_bytes) ==
        Approx(0.098).margin(0.005));
  auto pro =
      dsv4::plan_memory(dsv4::v4_pro_config(), 1 << 20, KvFormat::kPacked, 1ll << 30).value();
  CHECK(pro.cache_bytes_per_token == Approx(5031.0).epsilon(1e-3));
  CHECK(pro.cache_ram_bytes == 1ll << 30);
  CHECK(pro.cache_disk_bytes == pro.total_cache_bytes - (1ll << 30));
  // Weights in the official formats: FP4 experts dominate; about 156 GB without the MTP layer.
  CHECK(double(packed.total_weight_bytes) / 1e9 == Approx(156.0).margin(1.0));
  CHECK_FALSE(dsv4::plan_memory(dsv4::v4_flash_config(), -1, KvFormat::kPacked, 0).is_ok());
}

TEST_CASE("prefix store: a new session starts from the longest saved prefix", "[session-file]") {
  dsv4::test::TempDir dir("prefix");
  auto model = load("tiny-a-q");
  const int64_t V = model->config().vocab_size;
  auto store = dsv4::PrefixStore::open((dir.path() / "store").string());
  REQUIRE(store.is_ok());
  const std::vector<int32_t> conversation = ids(120, V);
  // Turn 1 (40 tokens) and turn 2 (90 tokens) are saved.
  for (int64_t n : {40, 90}) {
    auto s = Session::create(model).value();
    continue_with(*s, {conversation.begin(), conversation.begin() + n});
    REQUIRE(store.value().save(*s).is_ok());
  }
  CHECK(store.value().saved_lengths(*model) == std::vector<int64_t>{40, 90});
  // Turn 3's prompt: the whole conversation. It resumes at 90 and matches an uninterrupted run.
  auto resumed = store.value().load_longest_prefix(model, conversation);
  REQUIRE(resumed.is_ok());
  CHECK(resumed.value()->position() == 90);
  const std::vector<int32_t> rest(conversation.begin() + 90, conversation.end());
  const std::vector<float> got = continue_with(*resumed.value(), rest);
  auto full = Session::create(model).value();
  continue_with(*full, {conversation.begin(), conversation.begin() + 90});
  const std::vector<float> want = continue_with(*full, rest);
  CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0);
  // A prompt that diverges after 50 tokens can only use the 40-token entry.
  std::vector<int32_t> other = conversation;
  other[50] = (other[50] + 1) % int32_t(V);
  CHECK(store.value().load_longest_prefix(model, other).value()->position() == 40);
  // Nothing matches: a fresh session. Another model sees none of these entries.
  CHECK(store.value().load_longest_prefix(model, ids(10, V, 9)).value()->position() == 0);
  auto other_model = load("tiny-a");
  CHECK(store.value().saved_lengths(*other_model).empty());
  // A damaged entry is skipped in favour of a shorter one.
  for (const auto& e : fs::directory_iterator(dir.path() / "store"))
    if (e.path().filename().string().ends_with("-90.dsv4session")) {
      std::vector<uint8_t> bytes = read_bytes(e.path());
      bytes[bytes.size() / 2] ^= 1;
      write_bytes(e.path(), bytes);
    }
  CHECK(store.value().load_longest_prefix(model, conversation).value()->position() == 40);
}

namespace {
// Five layers: window, window, CSA (top-128 of the compressed entries), HCA, window; a 1024
// vocabulary keeps the head cheap.
std::shared_ptr<const dsv4::Model> tier_model() {
  dsv4::ModelConfig c = dsv4::demo_model_config(5);
  c.vocab_size = 1024;
  return dsv4::Model::from_weights(
             c, dsv4::random_weights(c, 11, dsv4::RandomWeightFormats::official()))
      .value();
}
}  // namespace

TEST_CASE("disk tier: a session under a quarter of its cache in RAM gives the same logits",
          "[session-file][tier]") {
  auto model = tier_model();
  const dsv4::ModelConfig& c = model->config();
  dsv4::test::TempDir dir("session-tier");
  for (KvFormat format : {KvFormat::kPacked, KvFormat::kF32}) {
    if (dsv4::test::sanitized_run() && format != KvFormat::kPacked) continue;  // see sanitized_run
    INFO("format " << dsv4::kv_format_name(format));
    const std::vector<int32_t> prompt = ids(3000, c.vocab_size), steps = ids(40, c.vocab_size, 2);
    dsv4::SessionOptions so;
    so.kv_format = format;
    so.max_chunk = 512;
    auto in_ram = Session::create(model, so).value();
    continue_with(*in_ram, prompt);
    const size_t cache_bytes = in_ram->memory().total_used(dsv4::CacheKind::kCompressed) +
                               in_ram->memory().total_used(dsv4::CacheKind::kIndexer);
    dsv4::SessionOptions budgeted_options = so;
    budgeted_options.ram_budget = int64_t(cache_bytes / 4);
    budgeted_options.spill_dir = dir.path().string();
    auto budgeted = Session::create(model, budgeted_options).value();
    const std::vector<float> want_prefill = continue_with(*in_ram, steps);
    continue_with(*budgeted, prompt);
    const std::vector<float> got_prefill = continue_with(*budgeted, steps);
    CHECK(std::memcmp(got_prefill.data(), want_prefill.data(), want_prefill.size() * 4) == 0);
    const dsv4::CacheTierStats stats = budgeted->tier_stats();
    INFO("RAM " << stats.ram_bytes << ", disk " << stats.disk_bytes << ", hits " << stats.block_hits
                << ", misses " << stats.block_misses << ", file " << stats.file_bytes);
    CHECK(stats.ram_bytes <= size_t(budgeted_options.ram_budget));
    CHECK(stats.ram_bytes + stats.disk_bytes ==
          in_ram->memory().total_used(dsv4::CacheKind::kCompressed) +
              in_ram->memory().total_used(dsv4::CacheKind::kIndexer));
    CHECK(stats.block_misses > 0);
    CHECK(stats.traffic.blocks_read == stats.block_misses);
    CHECK(stats.traffic.raw_bytes_written >= stats.disk_bytes);
    CHECK(budgeted->memory().total_on_disk() == stats.disk_bytes);
    // Saved from the disk tier, the file is the one the RAM-only session writes.
    REQUIRE(in_ram->save((dir.path() / "ram").string()).is_ok());
    REQUIRE(budgeted->save((dir.path() / "tier").string()).is_ok());
    CHECK(read_bytes(dir.path() / "ram") == read_bytes(dir.path() / "tier"));
    // A fork shares the spilled blocks, and both continue exactly.
    auto fork = budgeted->fork().value();
    const std::vector<int32_t> more = ids(5, c.vocab_size, 7);
    const std::vector<float> want = continue_with(*in_ram, more);
    CHECK(std::memcmp(continue_with(*fork, more).data(), want.data(), want.size() * 4) == 0);
    // Loaded under the budget, it stays within it and continues exactly.
    auto loaded = Session::load(model, (dir.path() / "tier").string(), budgeted_options).value();
    CHECK(loaded->tier_stats().ram_bytes <= size_t(budgeted_options.ram_budget));
    CHECK(std::memcmp(continue_with(*loaded, more).data(), want.data(), want.size() * 4) == 0);
    // A spill that fails (disk full) fails the append, which leaves the session as it was.
    dsv4::set_spill_write_failure(true);
    std::vector<float> unused(size_t(600) * size_t(c.vocab_size));
    const Status failed = budgeted->append(ids(600, c.vocab_size, 5), unused.data());
    dsv4::set_spill_write_failure(false);
    CHECK(failed.code() == dsv4::StatusCode::kIo);
    CHECK(budgeted->position() == int64_t(prompt.size() + steps.size()));
    CHECK(std::memcmp(continue_with(*budgeted, more).data(), want.data(), want.size() * 4) == 0);
  }
}

TEST_CASE("disk tier: lossy cold entries are opt-in, smaller, and their deviation is bounded",
          "[session-file][tier]") {
  auto model = tier_model();
  const dsv4::ModelConfig& c = model->config();
  dsv4::test::TempDir dir("session-lossy");
  const std::vector<int32_t> prompt = ids(3000, c.vocab_size), steps = ids(40, c.vocab_size, 2);
  dsv4::SessionOptions so;
  so.kv_format = KvFormat::kPacked;
  so.max_chunk = 512;
  auto in_ram = Session::create(model, so).value();
  continue_with(*in_ram, prompt);
  const std::vector<float> want = continue_with(*in_ram, steps);
  so.ram_budget = int64_t(in_ram->memory().total_used() / 8);
  so.spill_dir = dir.path().string();
  auto lossless = Session::create(model, so).value();
  so.lossy_cold_entries = true;
  auto lossy = Session::create(model, so).value();
  continue_with(*lossless, prompt);
  continue_with(*lossy, prompt);
  continue_with(*lossless, steps);
  const std::vector<float> got = continue_with(*lossy, steps);
  const auto lossy_stats = lossy->tier_stats(), lossless_stats = lossless->tier_stats();
  // The file holds e2m1 nope values instead of e4m3: smaller by about a third before zstd.
  CHECK(lossy_stats.traffic.raw_bytes_written * 10 < lossless_stats.traffic.raw_bytes_written * 8);
  const dsv4::test::Deviation d = dsv4::test::deviation(got.data(), want.data(), want.size());
  const double max_diff = d.max, mean_diff = d.mean;
  INFO("lossy cold entries: logits max |diff| " << max_diff << ", mean " << mean_diff);
  REQUIRE(std::all_of(got.begin(), got.end(), [](float v) { return std::isfinite(v); }));
  CHECK(max_diff > 0.0);  // it is lossy
  // Acceptance: no worse than the packed format itself against fp32 (max 2.46, mean 0.12 on
  // tiny-a-q: single logits move when an indexer or router decision flips). Regression bounds
  // near today's 1.29 and 0.027 (0.022 before the attention kernel's register tiles changed
  // the scores' rounding, and with it which decisions flip).
  CHECK(max_diff < 3.0);
  CHECK(mean_diff < 0.1);
  CHECK(max_diff <= 1.4);
  CHECK(mean_diff <= 0.03);
}
