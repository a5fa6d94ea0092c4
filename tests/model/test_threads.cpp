// The executor's resources after its first append: a decode step or a prefill chunk whose
// attention and indexer split their work across threads starts no thread (OpenMP's team is
// reused: a kernel's region opened inside another construct, even an inactive `if (false)` one,
// would be nested, and libgomp starts fresh threads for a nested team on every call), and a
// decode step allocates nothing (its scratch is the session's workspace or thread-local buffers
// that have grown already).
//
// The pthread_create and the operator new defined here come before the libraries' (the
// executable's symbols are searched first) and count the calls. Not built under the sanitizers,
// whose runtimes intercept both themselves.
#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <new>

#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"

namespace {
std::atomic<int> threads_created{0};
std::atomic<bool> counting_allocations{false};
std::atomic<int> allocations{0};

void* counted_allocation(size_t bytes, size_t alignment) {
  if (counting_allocations.load(std::memory_order_relaxed)) allocations.fetch_add(1);
  void* p = alignment > alignof(std::max_align_t)
                ? std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment)
                : std::malloc(bytes == 0 ? 1 : bytes);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

// Every C++ allocation of the process goes through these while the test counts.
void* operator new(size_t bytes) { return counted_allocation(bytes, 0); }
void* operator new[](size_t bytes) { return counted_allocation(bytes, 0); }
void* operator new(size_t bytes, std::align_val_t a) {
  return counted_allocation(bytes, size_t(a));
}
void* operator new[](size_t bytes, std::align_val_t a) {
  return counted_allocation(bytes, size_t(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                              void* arg) noexcept {
  using Create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const auto forward =
      reinterpret_cast<Create>(dlvsym(RTLD_NEXT, "pthread_create", "GLIBC_2.34"));
  threads_created.fetch_add(1);
  return forward(thread, attr, start, arg);
}

TEST_CASE("executor: after the first append, no thread starts and a decode step allocates nothing",
          "[session][threads]") {
  // The demo structure with wide heads: a CSA decode step at this context attends to 256 keys
  // of 16 heads × 512, which the attention kernel splits across threads, and the indexer's
  // scoring over 1024 compressed keys splits its blocks across threads too.
  dsv4::ModelConfig c = dsv4::demo_model_config(4);
  c.vocab_size = 512;
  c.num_attention_heads = 16;
  c.head_dim = 512;
  auto model = dsv4::Model::from_weights(
                   c, dsv4::random_weights(c, 7, dsv4::RandomWeightFormats::official()))
                   .value();
  dsv4::SessionOptions options;
  options.n_threads = 2;
  auto session = dsv4::Session::create(model, options).value();
  REQUIRE(session->fill_synthetic_cache(4096, 1).is_ok());
  std::vector<float> logits(size_t(c.vocab_size));
  int32_t token = 1;
  REQUIRE(session->append({&token, 1}, logits.data()).is_ok());  // OpenMP's team starts here
  const int before = threads_created.load();
  REQUIRE(before > 0);  // the counter sees OpenMP's threads (or the test could not fail)

  for (token = 2; token < 6; ++token) REQUIRE(session->append({&token, 1}, logits.data()).is_ok());
  CHECK(threads_created.load() == before);
  // ... and allocate nothing: scratch is the workspace or thread-local and has grown already.
  counting_allocations = true;
  for (token = 6; token < 10; ++token) {
    const dsv4::Status s = session->append({&token, 1}, logits.data());
    counting_allocations = false;
    REQUIRE(s.is_ok());
    counting_allocations = true;
  }
  counting_allocations = false;
  CHECK(allocations.load() == 0);
  std::vector<int32_t> chunk(48);
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = int32_t(i * 7 % c.vocab_size);
  std::vector<float> chunk_logits(chunk.size() * size_t(c.vocab_size));  // every position's row
  REQUIRE(session->append(chunk, chunk_logits.data()).is_ok());
  CHECK(threads_created.load() == before);
  for (float x : chunk_logits) REQUIRE(std::isfinite(x));
}

namespace {
// Allocations during `steps` decode steps after a warm-up of 5, with a cache of 600 positions.
int allocations_in_decode(std::shared_ptr<const dsv4::Model> model,
                          const dsv4::SessionOptions& options, int steps) {
  const int64_t V = model->config().vocab_size;
  auto session = dsv4::Session::create(model, options).value();
  REQUIRE(session->fill_synthetic_cache(600, 3).is_ok());
  std::vector<float> logits(static_cast<size_t>(V));
  for (int32_t token = 1; token < 6; ++token)
    REQUIRE(session->append({&token, 1}, logits.data()).is_ok());
  allocations = 0;
  for (int32_t token = 6; token < 6 + steps; ++token) {
    counting_allocations = true;
    const dsv4::Status s = session->append({&token, 1}, logits.data());
    counting_allocations = false;
    REQUIRE(s.is_ok());
  }
  for (float x : logits) REQUIRE(std::isfinite(x));
  return allocations.load();
}
}  // namespace

TEST_CASE("executor: a decode step allocates nothing in any cache format", "[session][workspace]") {
  // The exact numerics. (The official numerics' operators, an emulation of DeepSeek's rounding
  // points, still build their intermediate tensors on the heap: about 600 allocations a step on
  // this model, docs/numerics.md.)
  dsv4::ModelConfig c = dsv4::demo_model_config(4);
  c.vocab_size = 512;
  auto model = dsv4::Model::from_weights(
                   c, dsv4::random_weights(c, 9, dsv4::RandomWeightFormats::official()))
                   .value();
  for (dsv4::KvFormat format :
       {dsv4::KvFormat::kF32, dsv4::KvFormat::kBF16, dsv4::KvFormat::kPacked}) {
    dsv4::SessionOptions options;
    options.kv_format = format;
    INFO("format " << dsv4::kv_format_name(format));
    CHECK(allocations_in_decode(model, options, 4) == 0);
  }
}
