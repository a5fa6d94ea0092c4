#include "serve_scheduler.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace dsv4::cli {
namespace {

int64_t common_prefix(std::span<const int32_t> a, std::span<const int32_t> b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return int64_t(i);
}

bool expired(const Job& job) { return std::chrono::steady_clock::now() >= job.deadline; }

// The prefill's abort callback: the reader went away, or the job ran out of time.
bool should_stop(void* job) {
  const auto* j = static_cast<const Job*>(job);
  return j->cancelled.load() || expired(*j);
}

}  // namespace

bool Job::wait(std::vector<std::string>* out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex);
  changed.wait_for(lock, timeout, [this] { return done || !pieces.empty(); });
  out->assign(std::make_move_iterator(pieces.begin()), std::make_move_iterator(pieces.end()));
  pieces.clear();
  return done;
}

Scheduler::Scheduler(TextModel text, SchedulerOptions options, std::unique_ptr<PrefixStore> store,
                     ServeMetrics& metrics)
    : text_(std::move(text)),
      options_(std::move(options)),
      store_(std::move(store)),
      metrics_(metrics),
      thread_([this] { loop(); }) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  thread_.join();
}

void Scheduler::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
  }
  work_.notify_one();
}

std::unique_ptr<Session> Scheduler::session_for(std::span<const int32_t> prompt) {
  // At most all but the prompt's last token: the turn needs that token's logits.
  const int64_t usable = int64_t(prompt.size()) - 1;
  Cached* best = nullptr;
  int64_t best_len = 0;
  for (Cached& c : cache_) {
    const int64_t len = std::min(common_prefix(c.session->tokens(), prompt), usable);
    if (len > best_len) best = &c, best_len = len;
  }
  std::unique_ptr<Session> session;
  if (best) {
    best->last_use = ++clock_;
    auto fork = best->session->fork();
    throw_if_error(fork.status());
    session = std::move(fork.value());
  } else if (store_ && usable > 0) {
    auto loaded =
        store_->load_longest_prefix(text_.model, prompt.first(size_t(usable)), options_.session);
    throw_if_error(loaded.status());
    session = std::move(loaded.value());
    best_len = session->position();
  } else {
    auto fresh = Session::create(text_.model, options_.session);
    throw_if_error(fresh.status());
    return std::move(fresh.value());
  }
  if (session->position() > best_len) throw_if_error(session->truncate(best_len));
  return session;
}

void Scheduler::remember(std::unique_ptr<Session> session) {
  if (store_) {
    // A session the store cannot take (disk full) is still served from RAM.
    if (Status s = store_->save(*session); !s)
      std::fprintf(stderr, "dsv4 serve: prefix store: %s\n", s.to_string().c_str());
  }
  cache_.push_back({std::move(session), ++clock_});
  if (cache_.size() > options_.max_cached) {
    auto oldest =
        std::min_element(cache_.begin(), cache_.end(),
                         [](const Cached& a, const Cached& b) { return a.last_use < b.last_use; });
    cache_.erase(oldest);
  }
}

Scheduler::Active Scheduler::start(std::shared_ptr<Job> job) {
  Active a;
  a.job = std::move(job);
  const int64_t context = options_.session.max_positions, prompt = int64_t(a.job->prompt.size());
  if (context > 0) {
    // The prompt, at least one generated token and the closing EOS must fit; the reply is cut
    // to what fits (finish reason "length").
    if (prompt + 2 > context)
      fail(StatusCode::kOutOfRange, "the prompt has " + std::to_string(prompt) +
                                        " tokens; the context (--ctx, max_positions) holds " +
                                        std::to_string(context));
    a.job->max_tokens = std::min(a.job->max_tokens, context - prompt - 1);
  }
  a.session = session_for(a.job->prompt);
  a.job->cached_tokens = a.session->position();
  Job* j = a.job.get();
  PieceCallback on_piece = [j](const std::string& piece) {
    {
      std::lock_guard<std::mutex> lock(j->mutex);
      j->pieces.push_back(piece);
    }
    j->changed.notify_all();
    return !j->cancelled.load();
  };
  TokenChooser forced;
  if (!options_.forced_reply.empty()) {
    auto at = std::make_shared<size_t>(0);
    forced = [this, at](std::span<const float>) -> Result<int32_t> {
      return *at < options_.forced_reply.size() ? options_.forced_reply[(*at)++]
                                                : text_.tokenizer->eos_id();
    };
  }
  std::vector<int32_t> rest(a.job->prompt.begin() + a.job->cached_tokens, a.job->prompt.end());
  a.turn = std::make_unique<TurnStepper>(*a.session, text_.tokenizer, *a.job->sampler,
                                         std::move(rest), a.job->max_tokens, on_piece, forced);
  return a;
}

void Scheduler::end(Active& a, Status status) {
  Job& job = *a.job;
  TurnResult result = a.turn ? a.turn->result() : TurnResult{};
  result.prefill_tokens = int64_t(job.prompt.size());  // the whole prompt, cached part included
  if (status) {
    metrics_.cached_tokens += uint64_t(job.cached_tokens);
    metrics_.prompt_tokens += uint64_t(result.prefill_tokens);
    metrics_.completion_tokens += uint64_t(result.generated_tokens);
    metrics_.prefill_micros += uint64_t(result.prefill_seconds * 1e6);
    metrics_.decode_micros += uint64_t(result.decode_seconds * 1e6);
    remember(std::move(a.session));
  }
  // A cancellation the reader did not ask for is the deadline's (the prefill's abort callback
  // or the check between steps).
  const bool timed_out =
      status.code() == StatusCode::kCancelled && !job.cancelled.load() && expired(job);
  if (timed_out) {
    ++metrics_.timed_out;
    status = Status(StatusCode::kCancelled, "the request ran out of time");
  } else if (status.code() == StatusCode::kCancelled) {
    ++metrics_.cancelled;
  }
  a.session.reset();
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    job.timed_out = timed_out;
    job.status = std::move(status);
    job.result = std::move(result);
    job.done = true;
  }
  job.changed.notify_all();
  --metrics_.running;
}

void Scheduler::prefill_step(std::vector<Active>& active) {
  // Up to prefill_chunk prompt tokens per round, oldest request first: short prompts start
  // together, and a long one advances a chunk at a time between the running streams' steps.
  int64_t budget = options_.prefill_chunk;
  for (Active& a : active) {
    if (budget <= 0) return;
    if (a.job->done || a.turn->phase() != TurnStepper::Phase::kPrefill) continue;
    AppendOptions options;
    options.should_abort = &should_stop;
    options.abort_user = a.job.get();
    const int64_t before = a.turn->prefilled();
    if (Status s = a.turn->prefill(budget, options); !s) {
      end(a, s);
      continue;
    }
    budget -= a.turn->prefilled() - before;
  }
}

void Scheduler::decode_step(std::vector<Active>& active) {
  std::vector<Active*> stepping;
  std::vector<Session*> sessions;
  std::vector<int32_t> tokens;
  for (Active& a : active)
    if (!a.job->done && a.turn->stepping()) {
      stepping.push_back(&a);
      sessions.push_back(a.session.get());
      tokens.push_back(a.turn->next_token());
    }
  if (stepping.empty()) return;
  const auto vocab = size_t(text_.model->config().vocab_size);
  AppendOptions last;
  last.output = OutputMode::kLast;
  batch_logits_.resize(stepping.size() * vocab);
  const Status batched = Session::decode_batch(sessions, tokens, last, batch_logits_.data());
  ++metrics_.decode_steps;
  metrics_.decode_rows += stepping.size();
  for (size_t i = 0; i < stepping.size(); ++i) {
    Active& a = *stepping[i];
    Status s;
    if (batched) {
      std::memcpy(a.turn->logits(), batch_logits_.data() + i * vocab, vocab * sizeof(float));
    } else {
      // The batch failed as a whole (all sessions unchanged): each alone, so that only the
      // sessions at fault (a full context) fail.
      s = a.session->append({&tokens[i], 1}, last, a.turn->logits());
    }
    if (s) s = a.turn->advance();
    if (!s) end(a, s);
  }
}

void Scheduler::publish_cache_bytes(const std::vector<Active>& active) {
  std::array<std::array<uint64_t, 2>, kNumCacheKinds> bytes{};
  auto add = [&bytes](const Session& s) {
    const CacheMemory m = s.memory();
    for (size_t l = 0; l < m.bytes_used.size(); ++l)
      for (int k = 0; k < kNumCacheKinds; ++k) {
        const size_t disk = m.bytes_on_disk[l][size_t(k)];
        bytes[size_t(k)][0] += m.bytes_used[l][size_t(k)] - disk;
        bytes[size_t(k)][1] += disk;
      }
  };
  for (const Active& a : active)
    if (a.session) add(*a.session);
  for (const Cached& c : cache_) add(*c.session);
  for (int k = 0; k < kNumCacheKinds; ++k)
    for (int tier = 0; tier < 2; ++tier)
      metrics_.cache_bytes[size_t(k)][size_t(tier)] = bytes[size_t(k)][size_t(tier)];
}

void Scheduler::loop() {
  std::vector<Active> active;
  std::chrono::steady_clock::time_point last_publish;
  while (true) {
    std::vector<std::shared_ptr<Job>> starting;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_.wait(lock, [&] { return stopping_ || !queue_.empty() || !active.empty(); });
      stopping = stopping_;
      if (stopping) {
        starting.assign(queue_.begin(), queue_.end());
        queue_.clear();
      }
      while (!stopping_ && int64_t(active.size() + starting.size()) < options_.parallel &&
             !queue_.empty()) {
        starting.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    for (auto& job : starting) {
      --metrics_.waiting;
      ++metrics_.running;
      Active a;
      a.job = job;
      Status s = stopping ? Status(StatusCode::kCancelled, "the server is shutting down")
                          : capture_status([&] { a = start(job); });
      if (!s) {
        a.job = job;
        end(a, s);
        continue;
      }
      active.push_back(std::move(a));
    }
    if (stopping) {
      for (Active& a : active)
        if (!a.job->done) end(a, Status(StatusCode::kCancelled, "the server is shutting down"));
      return;
    }
    // Readers that went away and requests out of time end before the next step.
    for (Active& a : active) {
      if (a.job->cancelled.load()) {
        end(a, Status(StatusCode::kCancelled, "the client went away"));
      } else if (expired(*a.job)) {
        end(a, Status(StatusCode::kCancelled, "the request ran out of time"));
      }
    }
    std::erase_if(active, [](const Active& a) { return a.job->done; });
    prefill_step(active);
    decode_step(active);
    for (Active& a : active)
      if (!a.job->done && a.turn->phase() == TurnStepper::Phase::kDone) end(a, Status::ok());
    std::erase_if(active, [](const Active& a) { return a.job->done; });
    // The cache figures walk every session's layers: a few times a second, not every step (and
    // once more when the engine goes idle, so /metrics then shows the resting state).
    const auto now = std::chrono::steady_clock::now();
    if (active.empty() || now - last_publish >= std::chrono::milliseconds(250)) {
      publish_cache_bytes(active);
      last_publish = now;
    }
  }
}

}  // namespace dsv4::cli
