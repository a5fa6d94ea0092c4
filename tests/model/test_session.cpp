// Sessions as an executor: transactional appends (cancel, injected allocation failure), output
// modes, per-session threads, concurrent sessions on one model; and loading: weights in their
// stored formats, non-finite codes, the memory limit.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <thread>

#include "dsv4/backend/registry.hpp"
#include "dsv4/formats/safetensors.hpp"
#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"
#include "test_support.hpp"

namespace {

using dsv4::test::golden_model;

std::vector<int32_t> tokens(int64_t n, int64_t vocab, int seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 37 + seed * 11 + 5) % vocab);
  return t;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// Logits of `rest` after `prefix`, fed as: prefix in one append, then rest one token at a time.
std::vector<float> continuation(dsv4::Session& s, const std::vector<int32_t>& rest) {
  const int64_t V = s.model().config().vocab_size;
  std::vector<float> out(rest.size() * size_t(V));
  for (size_t i = 0; i < rest.size(); ++i)
    REQUIRE(s.append({&rest[i], 1}, out.data() + i * size_t(V)).is_ok());
  return out;
}

dsv4::SessionOptions chunks_of(int64_t n) {
  dsv4::SessionOptions options;
  options.max_chunk = n;
  return options;
}

bool cancel_after_calls(void* user) { return --*static_cast<int*>(user) < 0; }

}  // namespace

TEST_CASE("session: a cancelled append leaves the session bit-identical", "[session]") {
  auto model = golden_model("tiny-a-q");
  const int64_t V = model->config().vocab_size;
  // 150 tokens: every layer's ring wraps, CSA and HCA compressors are mid-window.
  const auto prefix = tokens(150, V, 1), chunk = tokens(37, V, 2), rest = tokens(9, V, 3);
  for (int budget : {0, 1, 3, 6}) {  // 6 layers: checks 0..6 all cancel
    auto reference = dsv4::Session::create(model).value();
    REQUIRE(reference->append(prefix, nullptr).is_ok());
    const auto expected = continuation(*reference, rest);

    auto session = dsv4::Session::create(model).value();
    REQUIRE(session->append(prefix, nullptr).is_ok());
    dsv4::AppendOptions cancel;
    int calls = budget;  // cancel after this many checks (between chunks and layers)
    cancel.should_abort = &cancel_after_calls;
    cancel.abort_user = &calls;
    std::vector<float> scratch(chunk.size() * size_t(V));
    const dsv4::Status s = session->append(chunk, cancel, scratch.data());
    INFO("abort after " << budget << " checks");
    REQUIRE(s.code() == dsv4::StatusCode::kCancelled);
    CHECK(session->position() == 150);
    const auto got = continuation(*session, rest);
    REQUIRE(all_finite(got));
    CHECK(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("session: an append failing on allocation leaves the session bit-identical",
          "[session]") {
  auto model = golden_model("tiny-a");
  const int64_t V = model->config().vocab_size;
  const auto prefix = tokens(131, V, 4), chunk = tokens(700, V, 5), rest = tokens(6, V, 6);
  auto reference = dsv4::Session::create(model).value();
  REQUIRE(reference->append(prefix, nullptr).is_ok());
  const auto expected = continuation(*reference, rest);
  for (int64_t countdown : {0, 1, 2}) {
    auto session = dsv4::Session::create(model).value();
    REQUIRE(session->append(prefix, nullptr).is_ok());
    dsv4::set_cache_allocation_failure_countdown(countdown);
    const dsv4::Status s = session->append(chunk, nullptr);
    dsv4::set_cache_allocation_failure_countdown(-1);
    INFO("allocation failure after " << countdown << " blocks");
    REQUIRE(s.code() == dsv4::StatusCode::kOutOfMemory);
    CHECK(session->position() == 131);
    const auto got = continuation(*session, rest);
    REQUIRE(all_finite(got));
    CHECK(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("session: output modes NONE, LAST and ALL", "[session]") {
  auto model = golden_model("tiny-a");
  const int64_t V = model->config().vocab_size;
  const auto prompt = tokens(70, V, 7);
  auto all_session = dsv4::Session::create(model, chunks_of(16)).value();  // several chunks
  std::vector<float> all(prompt.size() * size_t(V));
  REQUIRE(all_session->append(prompt, all.data()).is_ok());
  REQUIRE(all_finite(all));

  auto last_session = dsv4::Session::create(model, chunks_of(16)).value();
  dsv4::AppendOptions last;
  last.output = dsv4::OutputMode::kLast;
  std::vector<float> one(size_t(V), -1.0f);
  REQUIRE(last_session->append(prompt, last, one.data()).is_ok());
  // One row goes through the GEMV kernel, 16 through the GEMM: the same sums in another order.
  const float* last_row = all.data() + (prompt.size() - 1) * size_t(V);
  for (int64_t v = 0; v < V; ++v) {
    REQUIRE(std::isfinite(one[size_t(v)]));
    REQUIRE(std::abs(one[size_t(v)] - last_row[v]) <= 1e-5f * (1.0f + std::abs(last_row[v])));
  }

  auto none_session = dsv4::Session::create(model, chunks_of(16)).value();
  dsv4::AppendOptions none;
  none.output = dsv4::OutputMode::kNone;
  REQUIRE(none_session->append(prompt, none, nullptr).is_ok());
  CHECK(none_session->position() == int64_t(prompt.size()));
  // The cache is the same whichever output was asked for.
  const auto next = tokens(3, V, 8);
  CHECK(continuation(*none_session, next) == continuation(*all_session, next));
}

TEST_CASE("session: two threads on one shared model match one at a time", "[session][threads]") {
  auto model = golden_model("tiny-a-q");
  const int64_t V = model->config().vocab_size;
  const auto a = tokens(90, V, 9), b = tokens(120, V, 10);
  auto run = [&](const std::vector<int32_t>& prompt, int n_threads) {
    dsv4::SessionOptions options;
    options.n_threads = n_threads;
    options.max_chunk = 32;
    auto s = dsv4::Session::create(model, options).value();
    std::vector<float> logits(prompt.size() * size_t(V));
    REQUIRE(s->append(prompt, logits.data()).is_ok());
    const auto more = continuation(*s, tokens(4, V, 11));
    logits.insert(logits.end(), more.begin(), more.end());
    return logits;
  };
  const auto expected_a = run(a, 1), expected_b = run(b, 1);
  std::vector<float> got_a, got_b;
  std::thread ta([&] { got_a = run(a, 1); });
  std::thread tb([&] { got_b = run(b, 1); });
  ta.join();
  tb.join();
  REQUIRE(all_finite(got_a));
  CHECK(got_a == expected_a);
  CHECK(got_b == expected_b);
}

TEST_CASE("session: any chunking and thread count gives identical logits on a V4-shaped model",
          "[session][threads]") {
  // The demo structure (window 128, CSA with top-128, HCA, hash layers, 4 streams) with
  // official-format weights: 300 tokens whole, in uneven chunks, and as a prefill of 180 then
  // single steps, on 1 and 2 threads, in the exact and the packed cache.
  dsv4::ModelConfig c = dsv4::demo_model_config(4);
  c.vocab_size = 1024;  // the head of the real vocabulary would cost more than the layers
  auto model = dsv4::Model::from_weights(
                   c, dsv4::random_weights(c, 5, dsv4::RandomWeightFormats::official()))
                   .value();
  const std::vector<int32_t> ids = tokens(300, c.vocab_size, 3);
  auto fed = [&](dsv4::KvFormat format, int threads, const std::vector<size_t>& pieces) {
    dsv4::SessionOptions so;
    so.kv_format = format;
    so.n_threads = threads;
    auto s = dsv4::Session::create(model, so).value();
    std::vector<float> logits(ids.size() * size_t(c.vocab_size));
    size_t at = 0;
    for (size_t n : pieces) {
      REQUIRE(s->append({ids.data() + at, n}, logits.data() + at * size_t(c.vocab_size)).is_ok());
      at += n;
    }
    REQUIRE(at == ids.size());
    return logits;
  };
  std::vector<size_t> stepped(120, 1);
  stepped.insert(stepped.begin(), 180);
  for (dsv4::KvFormat format : {dsv4::KvFormat::kF32, dsv4::KvFormat::kPacked}) {
    INFO("format " << dsv4::kv_format_name(format));
    const std::vector<float> whole = fed(format, 2, {300});
    REQUIRE(all_finite(whole));
    for (const auto& [threads, pieces] : {std::pair<int, std::vector<size_t>>{1, {300}},
                                          {2, {37, 1, 130, 132}},
                                          {2, stepped},
                                          {1, stepped}}) {
      const std::vector<float> got = fed(format, threads, pieces);
      CHECK(std::memcmp(got.data(), whole.data(), whole.size() * 4) == 0);
    }
  }
}

TEST_CASE("load: a quantised checkpoint stays in its stored formats", "[load]") {
  auto model = golden_model("tiny-a-q");
  const auto& L = model->weights().layers[0];
  CHECK(L.wq_a.format == dsv4::WeightFormat::kFp8Block);
  CHECK(L.experts[0].w1.format == dsv4::WeightFormat::kFp4Block);
  size_t file_bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dsv4::test::golden_dir("tiny-a-q")))
    if (entry.path().filename() == "model.safetensors") file_bytes = entry.file_size();
  REQUIRE(file_bytes > 0);
  const double ratio = double(model->resident_bytes()) / double(file_bytes);
  INFO("resident " << model->resident_bytes() << " bytes, checkpoint " << file_bytes);
  CHECK(ratio > 0.5);
  CHECK(ratio < 1.1);  // within 10% of the file (fp32 copies of the small vectors included)
}

TEST_CASE("load: a memory limit below the estimate is OUT_OF_MEMORY with the numbers", "[load]") {
  dsv4::ModelLoadOptions options;
  options.memory_limit = 1000;
  auto model = dsv4::Model::load(dsv4::test::golden_dir("tiny-a-q").string(), options);
  REQUIRE_FALSE(model.is_ok());
  CHECK(model.status().code() == dsv4::StatusCode::kOutOfMemory);
  CHECK_THAT(model.status().message(), Catch::Contains("1000 bytes"));
  CHECK_THAT(model.status().message(), Catch::Contains("needs about"));
}

TEST_CASE("load: non-finite weight codes are refused with the tensor's name", "[load]") {
  const auto source = dsv4::test::golden_dir("tiny-a-q");
  auto checkpoint = dsv4::Checkpoint::open((source / "model.safetensors").string());
  REQUIRE(checkpoint.is_ok());
  struct Case {
    std::string tensor;
    uint8_t code;
    size_t at;  // byte index inside the tensor
  };
  for (const Case& c :
       {Case{"layers.1.attn.wq_b.weight", 0x7f, 5}, Case{"layers.0.attn.wkv.weight", 0xff, 77},
        Case{"layers.2.ffn.experts.3.w2.scale", 0xff, 1},
        Case{"embed.weight", 0x80, 2}}) {  // bf16 element 1 becomes 0x7f80 (+Inf)
    dsv4::test::TempDir dir("nonfinite");
    std::filesystem::copy_file(source / "config.json", dir.path() / "config.json");
    std::string bytes = dsv4::test::read_text(source / "model.safetensors");
    uint64_t header = 0;
    std::memcpy(&header, bytes.data(), 8);
    const auto entry = checkpoint.value().find(c.tensor);
    REQUIRE(entry.info != nullptr);
    const size_t offset = size_t(8 + header + entry.info->begin + c.at);
    bytes[offset] = char(c.code);
    if (c.tensor == "embed.weight") bytes[offset + 1] = char(0x7f);  // +Inf in bf16
    dsv4::test::write_text(dir.path() / "model.safetensors", bytes);
    auto model = dsv4::Model::load(dir.path().string());
    INFO(c.tensor);
    REQUIRE_FALSE(model.is_ok());
    CHECK(model.status().code() == dsv4::StatusCode::kCorruptFile);
    CHECK_THAT(model.status().message(), Catch::Contains(c.tensor));
  }
}

namespace {
// The CPU backend with its FP4 GEMM hidden: a device that cannot run routed FP4 experts.
class NoFp4Backend final : public dsv4::Backend {
 public:
  NoFp4Backend() : cpu_(dsv4::create_backend("cpu").value()) {}
  std::string_view name() const noexcept override { return "cpu-without-fp4"; }
  dsv4::DeviceKind device() const noexcept override { return dsv4::DeviceKind::kCpu; }
  bool supports(const dsv4::OpDesc& op) const noexcept override {
    if (op.kind == dsv4::OpKind::kGemm && op.weight_format == dsv4::WeightFormat::kFp4Block)
      return false;
    return cpu_->supports(op);
  }
  dsv4::Result<dsv4::Buffer> allocate(size_t bytes, dsv4::BufferUse use) noexcept override {
    return cpu_->allocate(bytes, use);
  }
  dsv4::Status copy_to_device(void* dst, const void* src, size_t n) noexcept override {
    return cpu_->copy_to_device(dst, src, n);
  }
  dsv4::Status copy_to_host(void* dst, const void* src, size_t n) noexcept override {
    return cpu_->copy_to_host(dst, src, n);
  }
  dsv4::Status synchronize() noexcept override { return dsv4::Status::ok(); }

 private:
  std::unique_ptr<dsv4::Backend> cpu_;
};
}  // namespace

TEST_CASE("load: a backend lacking an operator is refused at load, naming the operator",
          "[load][backend]") {
  dsv4::register_backend("cpu-without-fp4", []() -> dsv4::Result<std::unique_ptr<dsv4::Backend>> {
    return std::unique_ptr<dsv4::Backend>(new NoFp4Backend());
  });
  dsv4::ModelLoadOptions options;
  options.backend = "cpu-without-fp4";
  auto refused = dsv4::Model::load(dsv4::test::golden_dir("tiny-a-q").string(), options);
  REQUIRE_FALSE(refused.is_ok());
  CHECK(refused.status().code() == dsv4::StatusCode::kUnsupported);
  CHECK_THAT(refused.status().message(), Catch::Contains("gemm[fp4-e2m1-b32]"));
  CHECK_THAT(refused.status().message(), Catch::Contains("ffn.experts.0.w1"));
  // The same backend runs a checkpoint without FP4 weights.
  CHECK(dsv4::Model::load(dsv4::test::golden_dir("tiny-a").string(), options).is_ok());
  // "best" only picks a backend that supports everything.
  options.backend = "best";
  auto best = dsv4::Model::load(dsv4::test::golden_dir("tiny-a-q").string(), options);
  REQUIRE(best.is_ok());
  for (const auto& r : dsv4::required_operators(best.value()->config(), best.value()->weights()))
    CHECK(best.value()->backend().supports(r.op));
}

TEST_CASE("load: a written checkpoint of official-format random weights loads back exactly",
          "[load][roundtrip]") {
  for (int64_t hidden : {256, 200}) {  // 200: partial FP8 and FP4 scale blocks
    dsv4::ModelConfig c = dsv4::demo_model_config(4);
    c.hidden_size = hidden;
    c.moe_intermediate_size = 72;
    c.vocab_size = 512;
    const auto weights = dsv4::random_weights(c, 11, dsv4::RandomWeightFormats::official());
    dsv4::test::TempDir dir("roundtrip");
    REQUIRE(dsv4::write_checkpoint(dir.path().string(), c, weights).is_ok());
    auto loaded = dsv4::Model::load(dir.path().string());
    REQUIRE(loaded.is_ok());
    auto built = dsv4::Model::from_weights(c, weights).value();
    CHECK(loaded.value()->weights().layers[1].experts[0].w2.format ==
          dsv4::WeightFormat::kFp4Block);
    CHECK(loaded.value()->weights().layers[1].wq_b.format == dsv4::WeightFormat::kFp8Block);
    const auto prompt = tokens(150, c.vocab_size, 12);
    std::vector<float> a(prompt.size() * 512), b(prompt.size() * 512);
    REQUIRE(dsv4::Session::create(loaded.value()).value()->append(prompt, a.data()).is_ok());
    REQUIRE(dsv4::Session::create(built).value()->append(prompt, b.data()).is_ok());
    REQUIRE(all_finite(a));
    INFO("hidden " << hidden);
    CHECK(a == b);
  }
}

TEST_CASE("workspace: decode allocates nothing, and the working set does not grow with context",
          "[session][workspace]") {
  auto model = golden_model("tiny-a-q");
  const int64_t V = model->config().vocab_size;
  std::vector<size_t> high_water;
  for (int64_t context : {1000, 16000}) {
    auto session = dsv4::Session::create(model).value();
    const size_t reserved = session->workspace_capacity();
    REQUIRE(session->fill_synthetic_cache(context, 1).is_ok());
    std::vector<float> logits(static_cast<size_t>(V));
    for (int32_t step = 0; step < 20; ++step)
      REQUIRE(session->append({&step, 1}, logits.data()).is_ok());
    REQUIRE(all_finite(logits));
    CHECK(session->workspace_capacity() == reserved);  // sized at creation: no growth
    high_water.push_back(session->workspace_high_water());
  }
  INFO("working set at 1000 tokens " << high_water[0] << " B, at 16000 tokens " << high_water[1]);
  // Only the key pointer lists (HCA entries, 1/m of the context) and the block table grow.
  CHECK(high_water[1] < high_water[0] + 16000 / 4 * sizeof(void*));
}

TEST_CASE("model: load progress reaches every layer group once, in order", "[model]") {
  std::vector<std::pair<int64_t, int64_t>> calls;
  dsv4::ModelLoadOptions options;
  options.repack_weights = false;
  options.progress = [&](int64_t done, int64_t total) { calls.emplace_back(done, total); };
  auto model = dsv4::Model::load(dsv4::test::golden_dir("tiny-a").string(), options);
  REQUIRE(model.is_ok());
  const int64_t groups =
      model.value()->config().num_hidden_layers + 1;  // + the model-level tensors
  REQUIRE(calls.size() == size_t(groups));
  for (size_t i = 0; i < calls.size(); ++i) {
    CHECK(calls[i].first == int64_t(i) + 1);
    CHECK(calls[i].second == groups);
  }
  // Repacking: the layers are the first half of the steps, the matrices copied the second; the
  // steps never go back and end at the total.
  calls.clear();
  options.repack_weights = true;
  REQUIRE(dsv4::Model::load(dsv4::test::golden_dir("tiny-a").string(), options).is_ok());
  REQUIRE(calls.size() > size_t(groups));
  for (size_t i = 0; i < size_t(groups); ++i)
    CHECK(calls[i] == std::pair{int64_t(i) + 1, 2 * groups});
  for (size_t i = 1; i < calls.size(); ++i) {
    CHECK(calls[i].first >= calls[i - 1].first);
    CHECK(calls[i].second == 2 * groups);
  }
  CHECK(calls.back().first == 2 * groups);
  // A callback that throws does not break the load.
  options.progress = [](int64_t, int64_t) { throw std::runtime_error("observer failed"); };
  CHECK(dsv4::Model::load(dsv4::test::golden_dir("tiny-a").string(), options).is_ok());
}
