// A bounded concurrency stress test (issue 11): threads × sessions × random operations on one
// shared model for a fixed time — appends of random lengths, appends cancelled from their abort
// callback, resets, truncations, forks handed to another thread (their copy-on-write blocks then
// live on two threads), batched decode steps, frees. Run under ThreadSanitizer and
// AddressSanitizer in CI; it checks every status and the bookkeeping (positions, finite logits)
// and fails on the first surprise.
//
// usage: stress_sessions [SECONDS=5] [THREADS=4]
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "dsv4/model/demo_model.hpp"
#include "dsv4/model/session.hpp"

namespace {

using dsv4::Session;

std::atomic<bool> g_failed{false};

void check(bool ok, const char* what, const dsv4::Status& status = dsv4::Status::ok()) {
  if (ok) return;
  std::fprintf(stderr, "stress: %s (%s)\n", what, status.to_string().c_str());
  g_failed = true;
}

// Forks on their way from one thread to another.
struct Mailbox {
  std::mutex mutex;
  std::deque<std::unique_ptr<Session>> sessions;
  void put(std::unique_ptr<Session> s) {
    std::lock_guard<std::mutex> lock(mutex);
    sessions.push_back(std::move(s));
  }
  std::unique_ptr<Session> take() {
    std::lock_guard<std::mutex> lock(mutex);
    if (sessions.empty()) return nullptr;
    auto s = std::move(sessions.front());
    sessions.pop_front();
    return s;
  }
};

struct Counters {
  std::atomic<uint64_t> appends{0}, cancelled{0}, resets{0}, truncates{0}, forks{0}, batches{0},
      frees{0};
};

void worker(const std::shared_ptr<const dsv4::Model>& model, int id, Mailbox& mailbox,
            Counters& counters, std::chrono::steady_clock::time_point until) {
  std::mt19937_64 rng(uint64_t(id) * 7919 + 1);
  const int64_t vocab = model->config().vocab_size;
  dsv4::SessionOptions options;
  options.n_threads = 1;
  options.max_positions = 600;
  options.kv_format = id % 2 ? dsv4::KvFormat::kPacked : dsv4::KvFormat::kF32;
  std::vector<std::unique_ptr<Session>> mine;
  std::vector<float> logits;
  auto random_tokens = [&](int64_t n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(rng() % uint64_t(vocab));
    return t;
  };
  while (std::chrono::steady_clock::now() < until && !g_failed) {
    if (mine.size() < 3) {
      if (auto received = mailbox.take()) {
        mine.push_back(std::move(received));
      } else {
        auto created = Session::create(model, options);
        check(created.is_ok(), "create", created.status());
        if (!created) return;
        mine.push_back(std::move(created.value()));
      }
    }
    Session& s = *mine[rng() % mine.size()];
    const int op = int(rng() % 100);
    const int64_t before = s.position();
    if (op < 40) {  // append, sometimes cancelled part-way by its abort callback
      const int64_t n = 1 + int64_t(rng() % 24);
      if (before + n > 600) {
        s.reset();
        ++counters.resets;
        continue;
      }
      std::atomic<int> calls{0};
      const int cancel_after = rng() % 4 == 0 ? int(rng() % 6) : -1;
      struct Abort {
        std::atomic<int>* calls;
        int after;
      } abort{&calls, cancel_after};
      dsv4::AppendOptions append;
      append.output = dsv4::OutputMode::kLast;
      append.should_abort = [](void* user) {
        auto* a = static_cast<Abort*>(user);
        return a->after >= 0 && a->calls->fetch_add(1) >= a->after;
      };
      append.abort_user = &abort;
      logits.assign(size_t(vocab), 0.0f);
      const dsv4::Status status = s.append(random_tokens(n), append, logits.data());
      if (status.code() == dsv4::StatusCode::kCancelled) {
        check(s.position() == before, "a cancelled append moved the session");
        ++counters.cancelled;
      } else {
        check(status.is_ok(), "append", status);
        check(s.position() == before + n, "append: position");
        for (float v : logits) check(std::isfinite(v), "append: logits not finite");
        ++counters.appends;
      }
    } else if (op < 50) {
      s.reset();
      check(s.position() == 0, "reset");
      ++counters.resets;
    } else if (op < 60 && before > 1) {
      const int64_t to = int64_t(rng() % uint64_t(before));
      const dsv4::Status status = s.truncate(to);
      check(status.is_ok() && s.position() == to, "truncate", status);
      ++counters.truncates;
    } else if (op < 75) {  // a fork to another thread: its blocks are shared copy-on-write
      auto fork = s.fork();
      check(fork.is_ok(), "fork", fork.status());
      if (fork) mailbox.put(std::move(fork.value()));
      ++counters.forks;
    } else if (op < 90 && mine.size() >= 2) {  // one decode step of all of this thread's sessions
      std::vector<Session*> batch;
      std::vector<int32_t> tokens;
      for (auto& m : mine)
        if (m->position() < 600) {
          batch.push_back(m.get());
          tokens.push_back(int32_t(rng() % uint64_t(vocab)));
        }
      if (batch.empty()) continue;
      logits.assign(batch.size() * size_t(vocab), 0.0f);
      dsv4::AppendOptions last;
      last.output = dsv4::OutputMode::kLast;
      const dsv4::Status status = Session::decode_batch(batch, tokens, last, logits.data());
      check(status.is_ok(), "decode_batch", status);
      for (float v : logits) check(std::isfinite(v), "decode_batch: logits not finite");
      ++counters.batches;
    } else if (mine.size() > 1) {
      mine.erase(mine.begin() + std::ptrdiff_t(rng() % mine.size()));
      ++counters.frees;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
  const int n_threads = argc > 2 ? std::atoi(argv[2]) : 4;
  // V4-shaped and small: window, CSA and HCA layers, hash routing, a 512-token vocabulary.
  dsv4::ModelConfig c = dsv4::demo_model_config(4);
  c.vocab_size = 512;
  c.sliding_window = 16;
  dsv4::ModelLoadOptions load;
  load.n_threads = 1;  // the threads are the test's own: one OpenMP thread per session
  auto model = dsv4::Model::from_weights(
      c, dsv4::random_weights(c, 3, dsv4::RandomWeightFormats::official()), load);
  if (!model) {
    std::fprintf(stderr, "stress: %s\n", model.status().to_string().c_str());
    return 1;
  }
  Mailbox mailbox;
  Counters counters;
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < n_threads; ++i)
    threads.emplace_back(worker, std::cref(model.value()), i, std::ref(mailbox), std::ref(counters),
                         until);
  for (auto& t : threads) t.join();
  std::printf(
      "stress: %d threads for %.1f s: %llu appends, %llu cancelled, %llu resets, %llu "
      "truncates, %llu forks across threads, %llu batched steps, %llu frees%s\n",
      n_threads, seconds, (unsigned long long)counters.appends.load(),
      (unsigned long long)counters.cancelled.load(), (unsigned long long)counters.resets.load(),
      (unsigned long long)counters.truncates.load(), (unsigned long long)counters.forks.load(),
      (unsigned long long)counters.batches.load(), (unsigned long long)counters.frees.load(),
      g_failed ? " — FAILED" : "");
  return g_failed ? 1 : 0;
}
