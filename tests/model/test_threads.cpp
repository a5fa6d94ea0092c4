// The executor starts no threads once OpenMP's team exists: a decode step or a prefill chunk whose
// attention and indexer split their work across threads reuses the team. (A kernel's parallel
// region opened inside another construct, even an inactive `if (false)` one, is a nested region,
// for which libgomp starts fresh threads on every call.)
//
// The pthread_create defined here comes before the C library's (the executable's symbols are
// searched first), counts the call and forwards it. Not built under the sanitizers, whose
// runtimes intercept pthread_create themselves.
#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>

#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"

namespace {
std::atomic<int> threads_created{0};
}

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                              void* arg) noexcept {
  using Create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const auto forward =
      reinterpret_cast<Create>(dlvsym(RTLD_NEXT, "pthread_create", "GLIBC_2.34"));
  threads_created.fetch_add(1);
  return forward(thread, attr, start, arg);
}

TEST_CASE("executor: decode steps and prefill chunks start no threads after the first append",
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
  std::vector<int32_t> chunk(48);
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = int32_t(i * 7 % c.vocab_size);
  std::vector<float> chunk_logits(chunk.size() * size_t(c.vocab_size));  // every position's row
  REQUIRE(session->append(chunk, chunk_logits.data()).is_ok());
  CHECK(threads_created.load() == before);
  for (float x : chunk_logits) REQUIRE(std::isfinite(x));
}
