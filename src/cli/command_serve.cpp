// dsv4 serve: an OpenAI-compatible HTTP server over the engine and the text path.
//
// GET /health, /v1/models, /metrics; POST /v1/chat/completions and /v1/completions, plain or
// streamed as server-sent events (messages through the V4 chat encoding, request-level tools on
// the system message, thinking and reasoning_effort, DSML tool calls returned as `tool_calls`,
// the reasoning as `reasoning_content`, usage counts with cached tokens), behind an optional API
// key compared in constant time, on loopback unless told otherwise. HTTP threads parse and check
// a request, hand it to the scheduler (serve_scheduler.hpp: batched decode, chunked prefill, the
// prefix cache) and stream its text back; a client that goes away cancels its request before the
// next decode step, and every request has a deadline (--timeout).
#include <httplib.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "dsv4/text/chat.hpp"
#include "serve_request.hpp"
#include "serve_scheduler.hpp"

namespace dsv4::cli {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxBodyBytes = size_t(4) << 20;

// An OpenAI-style error object with its HTTP status.
void send_error(httplib::Response& res, int status, const std::string& type,
                const std::string& message) {
  res.status = status;
  res.set_content(Json{{"error", {{"message", message}, {"type", type}, {"code", status}}}}.dump(),
                  "application/json");
}

// Equal strings in a time that depends only on their lengths (the key's content never leaks
// through the comparison's timing).
bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i] ^ b[i]);
  return diff == 0;
}

struct Server {
  TextModel text;
  std::string model_id;
  std::string api_key;
  int64_t max_queue = 16;  // requests admitted at once (running + waiting); beyond: 503
  std::chrono::seconds timeout{600};
  ServeMetrics metrics;
  std::unique_ptr<Scheduler> scheduler;

  // Admission: false (and a 503 with Retry-After) when the queue is full.
  bool admit(httplib::Response& res) {
    if (metrics.waiting.fetch_add(1) + metrics.running.load() >= max_queue) {
      metrics.waiting.fetch_sub(1);
      ++metrics.refused;
      res.set_header("Retry-After", "1");
      send_error(res, 503, "server_error", "the server is busy (queue full); retry shortly");
      return false;
    }
    return true;
  }

  bool authorized(const httplib::Request& req, httplib::Response& res) const {
    if (api_key.empty()) return true;
    const std::string given = req.get_header_value("Authorization");
    if (constant_time_equal(given, "Bearer " + api_key)) return true;
    send_error(res, 401, "invalid_request_error", "invalid or missing API key");
    return false;
  }

  // Hands a checked request to the scheduler.
  std::shared_ptr<Job> submit(GenerationRequest& r) {
    auto job = std::make_shared<Job>();
    job->prompt = std::move(r.prompt);
    job->max_tokens = r.max_tokens;
    job->sampler = std::move(r.sampler);
    job->deadline = std::chrono::steady_clock::now() + timeout;
    scheduler->submit(job);
    return job;
  }

  // Follows a job to its end, handing each piece of text to on_piece; while none comes, idle()
  // is asked every 250 ms. Either returning false (the client is gone) cancels the job.
  static Status follow(Job& job, const std::function<bool(const std::string&)>& on_piece,
                       const std::function<bool()>& idle) {
    std::vector<std::string> pieces;
    while (true) {
      const bool done = job.wait(&pieces, std::chrono::milliseconds(250));
      bool gone = false;
      for (const std::string& piece : pieces)
        if (!gone && !on_piece(piece)) gone = true;
      if (!gone && !done && pieces.empty() && !idle()) gone = true;
      if (gone) {
        job.cancelled = true;
        return Status(StatusCode::kCancelled, "the client went away");
      }
      if (done) {
        std::lock_guard<std::mutex> lock(job.mutex);
        return job.status;
      }
    }
  }

  // Runs a job to its end without streaming.
  static Result<TurnResult> finish(Job& job) {
    Status s = follow(
        job, [](const std::string&) { return true; }, [] { return true; });
    if (!s) return s;
    std::lock_guard<std::mutex> lock(job.mutex);
    return job.result;
  }

  // The generated turn as an OpenAI message: DSML tool calls as tool_calls, the thinking as
  // reasoning_content; text that does not follow the format is returned as plain content.
  // `parsed` (when not null) says whether the text followed the format.
  Json message_of(const TurnResult& r, bool thinking, bool* parsed = nullptr) const {
    const text::Tokenizer& tok = *text.tokenizer;
    // The parser wants the turn as the model closes it (with the EOS).
    const std::string closed =
        r.text + (r.ended_by_stop ? std::string(tok.token_piece(tok.eos_id())) : "");
    auto message = text::parse_completion(closed, thinking);
    if (parsed) *parsed = message.is_ok();
    if (message) return Json::parse(message.value());
    return Json{{"role", "assistant"}, {"content", r.text}};
  }

  static std::string finish_reason(const TurnResult& r, const Json& message) {
    if (message.contains("tool_calls") && !message["tool_calls"].empty()) return "tool_calls";
    return r.ended_by_stop ? "stop" : "length";
  }

  static Json usage_of(const TurnResult& r, int64_t cached) {
    return {{"prompt_tokens", r.prefill_tokens},
            {"completion_tokens", r.generated_tokens},
            {"total_tokens", r.prefill_tokens + r.generated_tokens},
            {"prompt_tokens_details", {{"cached_tokens", cached}}}};
  }

  Json envelope(const char* object) const {
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    return Json{{"id", "chatcmpl-" + std::to_string(now.count())},
                {"object", object},
                {"created", std::chrono::duration_cast<std::chrono::seconds>(now).count()},
                {"model", model_id}};
  }

  Json text_completion(const TurnResult& turn, int64_t cached) const {
    Json out = envelope("text_completion");
    out["choices"] = Json::array({{{"index", 0},
                                   {"text", turn.text},
                                   {"logprobs", nullptr},
                                   {"finish_reason", turn.ended_by_stop ? "stop" : "length"}}});
    out["usage"] = usage_of(turn, cached);
    return out;
  }

  std::string metrics_text() const {
    const auto line = [](std::string& out, const char* name, const char* type, const char* help,
                         double value) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
             name + " " + std::to_string(value) + "\n";
    };
    std::string out;
    const ServeMetrics& m = metrics;
    line(out, "dsv4_requests_total", "counter", "Generation requests admitted.",
         double(m.requests));
    line(out, "dsv4_requests_refused_total", "counter", "Requests refused with 503 (queue full).",
         double(m.refused));
    line(out, "dsv4_requests_failed_total", "counter", "Admitted requests that failed.",
         double(m.failed));
    line(out, "dsv4_prompt_tokens_total", "counter", "Prompt tokens prefilled.",
         double(m.prompt_tokens));
    line(out, "dsv4_completion_tokens_total", "counter", "Tokens generated.",
         double(m.completion_tokens));
    const double decode_s = double(m.decode_micros) / 1e6,
                 prefill_s = double(m.prefill_micros) / 1e6;
    line(out, "dsv4_decode_tokens_per_second", "gauge", "Generated tokens per second of decoding.",
         decode_s > 0 ? double(m.completion_tokens) / decode_s : 0.0);
    line(out, "dsv4_prefill_tokens_per_second", "gauge", "Prompt tokens per second of prefill.",
         prefill_s > 0 ? double(m.prompt_tokens) / prefill_s : 0.0);
    line(out, "dsv4_queue_length", "gauge", "Admitted requests waiting for the engine.",
         double(m.waiting));
    line(out, "dsv4_running", "gauge", "Requests generating now.", double(m.running));
    line(out, "dsv4_model_resident_bytes", "gauge", "Bytes of the loaded weights.",
         double(text.model->resident_bytes()));
    line(out, "dsv4_prompt_tokens_cached_total", "counter",
         "Prompt tokens served from the prefix cache.", double(m.cached_tokens));
    line(out, "dsv4_prefix_cache_hit_rate", "gauge",
         "Share of prompt tokens served from the prefix cache.",
         m.prompt_tokens ? double(m.cached_tokens) / double(m.prompt_tokens) : 0.0);
    line(out, "dsv4_requests_timed_out_total", "counter", "Requests ended by their deadline.",
         double(m.timed_out));
    line(out, "dsv4_requests_cancelled_total", "counter",
         "Requests cancelled because their client went away.", double(m.cancelled));
    line(out, "dsv4_decode_steps_total", "counter", "Batched decode steps.",
         double(m.decode_steps));
    line(out, "dsv4_decode_batch_rows_total", "counter",
         "Sequences advanced by the batched decode steps (rows / steps = mean batch size).",
         double(m.decode_rows));
    out +=
        "# HELP dsv4_cache_bytes KV cache bytes of the running and prefix-cached sessions, by "
        "kind and tier (blocks shared copy-on-write count once per session).\n"
        "# TYPE dsv4_cache_bytes gauge\n";
    for (int k = 0; k < kNumCacheKinds; ++k)
      for (int tier = 0; tier < 2; ++tier)
        out += "dsv4_cache_bytes{kind=\"" + std::string(cache_kind_name(CacheKind(k))) +
               "\",tier=\"" + (tier == 0 ? "ram" : "disk") + "\"} " +
               std::to_string(m.cache_bytes[size_t(k)][size_t(tier)].load()) + "\n";
    return out;
  }

  Json chat_completion(const TurnResult& turn, int64_t cached, bool thinking) const {
    const Json message = message_of(turn, thinking);
    Json out = envelope("chat.completion");
    out["choices"] = Json::array(
        {{{"index", 0}, {"message", message}, {"finish_reason", finish_reason(turn, message)}}});
    out["usage"] = usage_of(turn, cached);
    return out;
  }
};

// Splits a streamed turn into reasoning and content deltas as it grows: in thinking mode the text
// before </think> is reasoning; a DSML tool-call block ends the streamed content (the calls are
// sent whole at the end). A possible partial marker at the end is held back until it resolves.
class DeltaSplitter {
 public:
  explicit DeltaSplitter(bool thinking) : in_reasoning_(thinking) {}

  // The deltas the text so far allows: {reasoning, content}.
  std::pair<std::string, std::string> push(const std::string& piece) {
    text_ += piece;
    std::string reasoning, content;
    while (true) {
      if (in_reasoning_) {
        const size_t end = text_.find(kThinkEnd, sent_);
        if (end == std::string::npos) {
          reasoning += take(hold_back(kThinkEnd));
          break;
        }
        reasoning += text_.substr(sent_, end - sent_);
        sent_ = end + kThinkEnd.size();
        in_reasoning_ = false;
      } else if (!in_calls_) {
        const size_t calls = text_.find(kDsmlMarker, sent_);
        if (calls == std::string::npos) {
          // Trailing whitespace waits too: the format drops the blank line before a tool-call
          // block, so it is sent only once more text follows (or with the final chunk).
          size_t until = hold_back(kDsmlMarker);
          while (until > sent_ && std::isspace(static_cast<unsigned char>(text_[until - 1])))
            --until;
          content += take(until);
          break;
        }
        size_t until = calls;  // without the blank line the format puts before the block
        while (until > sent_ && std::isspace(static_cast<unsigned char>(text_[until - 1]))) --until;
        content += text_.substr(sent_, until - sent_);
        sent_ = calls;
        in_calls_ = true;
      } else {
        break;
      }
    }
    reasoning_sent_ += reasoning;
    content_sent_ += content;
    return {reasoning, content};
  }
  const std::string& reasoning_sent() const { return reasoning_sent_; }
  const std::string& content_sent() const { return content_sent_; }

 private:
  static constexpr std::string_view kThinkEnd = "</think>";
  static constexpr std::string_view kDsmlMarker = "<｜DSML｜";

  // How far the text may be sent without splitting a marker that may still be completing.
  size_t hold_back(std::string_view marker) const {
    for (size_t keep = std::min(marker.size() - 1, text_.size() - sent_); keep > 0; --keep)
      if (text_.compare(text_.size() - keep, keep, marker.substr(0, keep)) == 0)
        return text_.size() - keep;
    return text_.size();
  }
  std::string take(size_t until) {
    std::string out = text_.substr(sent_, until - sent_);
    sent_ = until;
    return out;
  }

  std::string text_, reasoning_sent_, content_sent_;
  size_t sent_ = 0;
  bool in_reasoning_, in_calls_ = false;
};

// The rest of `full` after what was already sent (all of it if `sent` is not its prefix).
std::string remainder(const std::string& full, const std::string& sent) {
  return full.compare(0, sent.size(), sent) == 0 ? full.substr(sent.size()) : full;
}

int http_status(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 400;
    case StatusCode::kUnsupported:
      return 501;
    default:
      return 500;
  }
}

// The request's JSON body, or false after answering 400 (malformed JSON, invalid UTF-8).
bool parse_body(const httplib::Request& req, httplib::Response& res, Json* body) {
  try {
    *body = Json::parse(req.body);
    return true;
  } catch (const std::exception& e) {
    send_error(res, 400, "invalid_request_error",
               std::string("the body is not valid JSON: ") + e.what());
    return false;
  }
}

void send_refusal(httplib::Response& res, const Status& status) {
  send_error(
      res, http_status(status.code()),
      status.code() == StatusCode::kInvalidArgument ? "invalid_request_error" : "server_error",
      status.message());
}

// Answers a request that ended without a turn: 504 past its deadline, else by its status.
void send_failure(httplib::Response& res, const Job& job, const Status& status) {
  if (job.timed_out) return send_error(res, 504, "timeout", status.message());
  send_refusal(res, status);
}

// Server-sent events: `data: <json>` per event, a comment while the engine is busy (so that a
// client that went away is noticed), `data: [DONE]` at the end.
struct EventSink {
  httplib::DataSink& sink;
  bool send(const Json& event) const { return write("data: " + event.dump() + "\n\n"); }
  bool keep_alive() const { return write(": keep-alive\n\n"); }
  void done() const {
    write("data: [DONE]\n\n");
    sink.done();
  }
  bool write(const std::string& text) const {
    return sink.is_writable() && sink.write(text.data(), text.size());
  }
};

// Ends a stream whose job failed: an error event (none when the client went away).
void end_stream_with_error(Server& server, const Job& job, const Status& status,
                           const EventSink& out) {
  if (!job.cancelled) {
    ++server.metrics.failed;
    out.send(Json{
        {"error",
         {{"message", status.message()}, {"type", job.timed_out ? "timeout" : "server_error"}}}});
  }
  out.sink.done();
}

// The stream of a chat completion: reasoning and content deltas as they come, then the tool
// calls, the finish reason and the usage.
void stream_chat(Server& server, Job& job, bool thinking, const EventSink& out) {
  const Json base = server.envelope("chat.completion.chunk");
  auto delta_chunk = [&base](Json delta, const Json& finish) {
    Json chunk = base;
    chunk["choices"] =
        Json::array({{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", finish}}});
    return chunk;
  };
  DeltaSplitter splitter(thinking);
  if (!out.send(delta_chunk({{"role", "assistant"}, {"content", ""}}, nullptr))) {
    job.cancelled = true;
    return;
  }
  const Status status = Server::follow(
      job,
      [&](const std::string& piece) {
        const auto [reasoning, content] = splitter.push(piece);
        Json delta = Json::object();
        if (!reasoning.empty()) delta["reasoning_content"] = reasoning;
        if (!content.empty()) delta["content"] = content;
        return delta.empty() || out.send(delta_chunk(delta, nullptr));
      },
      [&] { return out.keep_alive(); });
  if (!status) return end_stream_with_error(server, job, status, out);
  const TurnResult turn = job.result;  // done: no writer left
  bool parsed = false;
  const Json message = server.message_of(turn, thinking, &parsed);
  Json last = Json::object();
  // What the deltas have not carried yet. Text outside the format was streamed as it came
  // (reasoning while no </think> showed): only its unsent tail follows, as content.
  const std::string reasoning =
      parsed ? remainder(message.value("reasoning_content", ""), splitter.reasoning_sent()) : "";
  const std::string content =
      !parsed ? remainder(turn.text, splitter.reasoning_sent() + splitter.content_sent())
      : message["content"].is_string() ? remainder(message["content"], splitter.content_sent())
                                       : "";
  if (!reasoning.empty()) last["reasoning_content"] = reasoning;
  if (!content.empty()) last["content"] = content;
  if (message.contains("tool_calls") && !message["tool_calls"].empty()) {
    Json calls = message["tool_calls"];
    for (size_t i = 0; i < calls.size(); ++i) calls[i]["index"] = i;
    last["tool_calls"] = calls;
  }
  Json finish = delta_chunk(last, Server::finish_reason(turn, message));
  finish["usage"] = Server::usage_of(turn, job.cached_tokens);
  if (out.send(finish)) return out.done();
  out.sink.done();
}

// The stream of a text completion: the text as it comes, then the finish reason and the usage.
void stream_completion(Server& server, Job& job, const EventSink& out) {
  const Json base = server.envelope("text_completion");
  auto text_chunk = [&base](const std::string& text, const Json& finish) {
    Json chunk = base;
    chunk["choices"] = Json::array(
        {{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}}});
    return chunk;
  };
  const Status status = Server::follow(
      job, [&](const std::string& piece) { return out.send(text_chunk(piece, nullptr)); },
      [&] { return out.keep_alive(); });
  if (!status) return end_stream_with_error(server, job, status, out);
  const TurnResult turn = job.result;
  Json finish = text_chunk("", turn.ended_by_stop ? "stop" : "length");
  finish["usage"] = Server::usage_of(turn, job.cached_tokens);
  if (out.send(finish)) return out.done();
  out.sink.done();
}

// What both generation endpoints share: the key, the body, the checks, admission; then the
// answer whole or streamed.
template <class Prepare, class Answer, class Stream>
void handle_generation(Server& server, const httplib::Request& req, httplib::Response& res,
                       Prepare prepare, Answer answer, Stream stream) {
  if (!server.authorized(req, res)) return;
  Json body;
  if (!parse_body(req, res, &body)) return;
  auto prepared = capture_result([&] { return prepare(body); });
  if (!prepared) return send_refusal(res, prepared.status());
  GenerationRequest& request = prepared.value();
  if (!server.admit(res)) return;
  ++server.metrics.requests;
  const bool streamed = request.stream;
  const bool thinking = request.chat.thinking;
  std::shared_ptr<Job> job = server.submit(request);
  if (!streamed) {
    auto turn = Server::finish(*job);
    if (!turn) {
      ++server.metrics.failed;
      return send_failure(res, *job, turn.status());
    }
    return res.set_content(answer(turn.value(), job->cached_tokens, thinking).dump(),
                           "application/json");
  }
  res.set_chunked_content_provider(
      "text/event-stream", [&server, job, thinking, stream](size_t, httplib::DataSink& sink) {
        stream(server, *job, thinking, EventSink{sink});
        return true;
      });
}

}  // namespace

int command_serve(const Args& args) {
  Args model_args = args;
  if (args.has("demo")) model_args.options["preset"] = "demo";
  auto loaded = load_text_model(model_args);
  if (!loaded) return report(loaded.status(), "serve");
  auto session_options = session_options_from_args(args);
  if (!session_options) return report(session_options.status(), "serve");
  Server server;
  server.text = loaded.value();
  server.model_id = args.has("demo") ? "dsv4-demo" : "dsv4";
  server.api_key = args.get("api-key");
  SchedulerOptions options;
  options.session = session_options.value();
  if (const char* forced = std::getenv("DSV4_SERVE_FORCED_REPLY")) {
    auto ids = server.text.tokenizer->encode(forced);
    if (!ids) return report(ids.status(), "serve");
    options.forced_reply = std::move(ids.value());
    std::fprintf(stderr, "dsv4 serve: test hook: every reply is DSV4_SERVE_FORCED_REPLY\n");
  }
  std::unique_ptr<PrefixStore> store;
  if (args.has("cache-dir")) {
    auto opened = PrefixStore::open(args.get("cache-dir"));
    if (!opened) return report(opened.status(), "serve");
    store = std::make_unique<PrefixStore>(std::move(opened.value()));
  }
  int64_t timeout_s = 600;
  const auto positive = [&args](const char* name, int64_t* out) {
    return !args.has(name) || (parse_int(args.get(name), out) && *out >= 1);
  };
  if (!positive("queue", &server.max_queue) || !positive("parallel", &options.parallel) ||
      !positive("timeout", &timeout_s) || !positive("ctx", &options.session.max_positions))
    return report(Status(StatusCode::kInvalidArgument,
                         "--queue, --parallel, --timeout and --ctx must be positive integers"),
                  "serve");
  server.timeout = std::chrono::seconds(timeout_s);
  const std::string host = args.get("host", "127.0.0.1");
  int64_t port = 8080;
  if (args.has("port") && (!parse_int(args.get("port"), &port) || port < 0 || port > 65535))
    return report(Status(StatusCode::kInvalidArgument, "--port must be in [0, 65535]"), "serve");
  // A probe session: refuses option combinations the model cannot run before listening.
  if (auto probe = Session::create(server.text.model, options.session); !probe)
    return report(probe.status(), "serve");
  server.scheduler =
      std::make_unique<Scheduler>(server.text, options, std::move(store), server.metrics);

  httplib::Server http;
  // Every admitted request holds a thread while it waits or streams; a few more answer the rest.
  const size_t threads = size_t(server.max_queue) + 4;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(kMaxBodyBytes);
  http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http.Get("/v1/models", [&](const httplib::Request& req, httplib::Response& res) {
    if (!server.authorized(req, res)) return;
    res.set_content(
        Json{{"object", "list"},
             {"data",
              Json::array({{{"id", server.model_id}, {"object", "model"}, {"owned_by", "dsv4"}}})}}
            .dump(),
        "application/json");
  });
  http.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    handle_generation(
        server, req, res,
        [&](const Json& body) { return prepare_chat(body, server.text.tokenizer); },
        [&](const TurnResult& turn, int64_t cached, bool thinking) {
          return server.chat_completion(turn, cached, thinking);
        },
        [](Server& s, Job& job, bool thinking, const EventSink& out) {
          stream_chat(s, job, thinking, out);
        });
  });
  http.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    handle_generation(
        server, req, res,
        [&](const Json& body) { return prepare_completion(body, server.text.tokenizer); },
        [&](const TurnResult& turn, int64_t cached, bool) {
          return server.text_completion(turn, cached);
        },
        [](Server& s, Job& job, bool, const EventSink& out) { stream_completion(s, job, out); });
  });
  http.Get("/metrics", [&](const httplib::Request& req, httplib::Response& res) {
    if (!server.authorized(req, res)) return;
    res.set_content(server.metrics_text(), "text/plain; version=0.0.4");
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty())
      send_error(res, res.status, "invalid_request_error",
                 res.status == 404 ? "no such endpoint" : "request refused");
  });

  const int bound = port == 0 ? http.bind_to_any_port(host)
                              : (http.bind_to_port(host, int(port)) ? int(port) : -1);
  if (bound < 0)
    return report(Status(StatusCode::kIo, "cannot listen on " + host + ":" + std::to_string(port)),
                  "serve");
  std::printf("dsv4 serve: %s, %lld sequences at once, on http://%s:%d\n",
              server.text.description.c_str(), static_cast<long long>(options.parallel),
              host.c_str(), bound);
  std::fflush(stdout);
  return http.listen_after_bind() ? 0 : 1;
}

}  // namespace dsv4::cli
