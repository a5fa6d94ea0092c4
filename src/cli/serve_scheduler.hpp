// dsv4 serve's engine side: one thread owns every session and runs the admitted requests
// together: up to `parallel` at once, their decode steps batched into one pass over the weights
// (Session::decode_batch), a prompt prefilled one chunk at a time between decode steps (a long
// prompt does not freeze running streams), and a prefix cache of finished sessions (RAM, and a
// PrefixStore with --cache-dir) from which a new request starts at its longest cached prefix.
// HTTP threads hand requests in as Jobs and read their pieces of text back.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/model/prefix_store.hpp"
#include "text_generation.hpp"

namespace dsv4::cli {

// What /metrics reports (Prometheus text): counters of the HTTP side and of the scheduler.
struct ServeMetrics {
  std::atomic<uint64_t> requests{0}, refused{0}, failed{0}, timed_out{0}, cancelled{0};
  std::atomic<uint64_t> prompt_tokens{0}, completion_tokens{0}, cached_tokens{0};
  std::atomic<uint64_t> prefill_micros{0}, decode_micros{0};
  std::atomic<uint64_t> decode_steps{0}, decode_rows{0};  // batched steps, and sessions in them
  std::atomic<int64_t> waiting{0}, running{0};
  // The cache bytes of the running and cached sessions by kind (CacheKind) and tier (RAM,
  // disk), refreshed every 250 ms while the engine runs and when it goes idle. Copy-on-write blocks
  // shared by forks count once per session that holds them.
  std::array<std::array<std::atomic<uint64_t>, 2>, kNumCacheKinds> cache_bytes{};
};

// One generation request: set up by an HTTP thread, run by the scheduler.
struct Job {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 0;
  std::unique_ptr<sampling::Sampler> sampler;
  std::chrono::steady_clock::time_point deadline;
  // The reader sets this when its client is gone: the scheduler drops the job before its next
  // step (and a prefill chunk stops at its next layer).
  std::atomic<bool> cancelled{false};

  // Under `mutex`, signalled by `changed`: the text not yet read, and the outcome.
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::string> pieces;
  bool done = false;
  bool timed_out = false;
  Status status;
  TurnResult result;
  int64_t cached_tokens = 0;  // prompt tokens that came from the prefix cache

  // Waits up to `timeout` for text or the end; moves the unread pieces to `out`. True once done
  // (the pieces are then complete).
  bool wait(std::vector<std::string>* out, std::chrono::milliseconds timeout);
};

struct SchedulerOptions {
  int64_t parallel = 4;         // sequences generating at once
  int64_t prefill_chunk = 256;  // prompt tokens per round between decode steps
  size_t max_cached = 8;        // finished sessions kept in RAM for the prefix cache
  SessionOptions session;       // every session's options (--ctx, --kv-format, ...)
  // Test hook (DSV4_SERVE_FORCED_REPLY): every reply is this text, fed token by token through the
  // engine instead of sampled, so tests can see tool calls and reasoning come back parsed.
  std::vector<int32_t> forced_reply;
};

class Scheduler {
 public:
  Scheduler(TextModel text, SchedulerOptions options, std::unique_ptr<PrefixStore> store,
            ServeMetrics& metrics);
  ~Scheduler();  // ends the jobs still queued or running (kCancelled) and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues an admitted job (metrics.waiting counts it until it starts).
  void submit(std::shared_ptr<Job> job);

 private:
  struct Active {
    std::shared_ptr<Job> job;
    std::unique_ptr<Session> session;
    std::unique_ptr<TurnStepper> turn;
    size_t forced_at = 0;
  };
  void loop();
  // A session for the job's prompt from the prefix cache, and its turn.
  Active start(std::shared_ptr<Job> job);
  std::unique_ptr<Session> session_for(std::span<const int32_t> prompt);
  void remember(std::unique_ptr<Session> session);
  // Prompt tokens of the jobs still prefilling, up to one chunk's worth per round.
  void prefill_step(std::vector<Active>& active);
  // One decode step of every job with a token to append, batched.
  void decode_step(std::vector<Active>& active);
  // Hands the outcome to the job's reader and keeps a finished session for later requests.
  void end(Active& a, Status status);
  void publish_cache_bytes(const std::vector<Active>& active);

  TextModel text_;
  SchedulerOptions options_;
  std::unique_ptr<PrefixStore> store_;
  ServeMetrics& metrics_;
  struct Cached {
    std::unique_ptr<Session> session;
    uint64_t last_use = 0;
  };
  std::vector<Cached> cache_;  // the scheduler thread's only
  uint64_t clock_ = 0;
  std::vector<float> batch_logits_;

  std::mutex mutex_;
  std::condition_variable work_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace dsv4::cli
