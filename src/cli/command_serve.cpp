// dsv4 serve: an OpenAI-compatible HTTP server over the engine and the text path.
//
// This slice answers one request at a time: GET /health, GET /v1/models and POST
// /v1/chat/completions, plain or streamed as server-sent events (messages through the V4 chat
// encoding, request-level tools on the system message, thinking and reasoning_effort, DSML tool
// calls returned as `tool_calls`, the reasoning as `reasoning_content`, usage counts), behind an
// optional API key compared in constant time, on loopback unless told otherwise. A streaming
// client that goes away stops its generation at the next token.
#include <httplib.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "dsv4/model/prefix_store.hpp"
#include "dsv4/text/chat.hpp"
#include "text_generation.hpp"

namespace dsv4::cli {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxBodyBytes = size_t(4) << 20;
constexpr int64_t kMaxTokensLimit = 4096;
constexpr int64_t kDefaultMaxTokens = 256;

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

// A request field of an expected JSON type (absent or null: the default).
template <class T>
T field(const Json& body, const char* name, T fallback, Json::value_t type, const char* what) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  const Json& v = body[name];
  const bool ok = type == Json::value_t::number_float     ? v.is_number()
                  : type == Json::value_t::number_integer ? v.is_number_integer()
                                                          : v.type() == type;
  if (!ok) fail(StatusCode::kInvalidArgument, std::string("'") + name + "' must be " + what);
  return v.get<T>();
}

// What /metrics reports (Prometheus text).
struct Metrics {
  std::atomic<uint64_t> requests{0}, refused{0}, failed{0};
  std::atomic<uint64_t> prompt_tokens{0}, completion_tokens{0}, cached_tokens{0};
  std::atomic<uint64_t> prefill_micros{0}, decode_micros{0};
  std::atomic<int64_t> waiting{0}, running{0};
};

struct Server {
  TextModel text;
  std::string model_id;
  std::string api_key;
  int64_t max_queue = 16;  // requests admitted at once (running + waiting); beyond: 503
  std::mutex engine;       // one generation at a time in this slice
  Metrics metrics;
  // The prefix cache: finished sessions (prompt, reply and its EOS), least recently used last
  // out; a request starts from the one sharing the longest prefix with its prompt (truncated to
  // it). With --cache-dir they are also saved in a PrefixStore and survive restarts.
  struct Cached {
    std::unique_ptr<Session> session;
    uint64_t last_use = 0;
  };
  std::vector<Cached> cache;  // guarded by `engine`
  size_t max_cached = 8;
  uint64_t clock = 0;
  std::unique_ptr<PrefixStore> store;
  // Test hook (DSV4_SERVE_FORCED_REPLY): every reply is this text, fed token by token through the
  // engine instead of sampled, so tests can see tool calls and reasoning come back parsed.
  std::vector<int32_t> forced_reply;

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

  // The messages as the encoder takes them: request-level tools go on the system message.
  static Json messages_with_tools(const Json& body) {
    Json messages = body.at("messages");
    if (!body.contains("tools") || body["tools"].is_null()) return messages;
    if (!body["tools"].is_array()) fail(StatusCode::kInvalidArgument, "'tools' must be an array");
    if (messages.empty() || !messages[0].is_object() || messages[0].value("role", "") != "system")
      messages.insert(messages.begin(), Json{{"role", "system"}, {"content", ""}});
    messages[0]["tools"] = body["tools"];
    return messages;
  }

  // A checked request, ready to run.
  struct GenerationRequest {
    text::ChatOptions chat;
    int64_t max_tokens = kDefaultMaxTokens;
    bool stream = false;
    std::unique_ptr<sampling::Sampler> sampler;
    std::vector<int32_t> prompt;
  };

  GenerationRequest prepare_chat(const Json& body) const {
    if (!body.is_object()) fail(StatusCode::kInvalidArgument, "the body must be a JSON object");
    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
      fail(StatusCode::kInvalidArgument, "'messages' must be a non-empty array");
    GenerationRequest r = prepare_sampling(body);
    r.chat.thinking = field<bool>(body, "thinking", false, Json::value_t::boolean, "a boolean");
    r.chat.reasoning_effort =
        field<std::string>(body, "reasoning_effort", "", Json::value_t::string, "a string");
    if (!r.chat.reasoning_effort.empty()) r.chat.thinking = true;
    auto rendered = text::render_chat(messages_with_tools(body).dump(), r.chat);
    throw_if_error(rendered.status());
    auto prompt = text::tokenize_prompt(*text.tokenizer, rendered.value());
    throw_if_error(prompt.status());
    r.prompt = std::move(prompt.value());
    return r;
  }

  // /v1/completions: the prompt text as it is (after the BOS), no chat format.
  GenerationRequest prepare_completion(const Json& body) const {
    if (!body.is_object()) fail(StatusCode::kInvalidArgument, "the body must be a JSON object");
    if (!body.contains("prompt") || !body["prompt"].is_string())
      fail(StatusCode::kInvalidArgument, "'prompt' must be a string");
    GenerationRequest r = prepare_sampling(body);
    if (r.stream) fail(StatusCode::kUnsupported, "streaming /v1/completions is not served yet");
    const text::Tokenizer& tok = *text.tokenizer;
    auto ids = tok.encode(body["prompt"].get<std::string>());
    throw_if_error(ids.status());
    if (tok.bos_id() >= 0) r.prompt.push_back(tok.bos_id());
    r.prompt.insert(r.prompt.end(), ids.value().begin(), ids.value().end());
    return r;
  }

  // The fields every generation takes: stream, max_tokens, temperature, top_p, seed, stop.
  GenerationRequest prepare_sampling(const Json& body) const {
    GenerationRequest r;
    r.stream = field<bool>(body, "stream", false, Json::value_t::boolean, "a boolean");
    r.max_tokens = field<int64_t>(body, "max_tokens", kDefaultMaxTokens,
                                  Json::value_t::number_integer, "an integer");
    if (r.max_tokens < 1 || r.max_tokens > kMaxTokensLimit)
      fail(StatusCode::kInvalidArgument,
           "'max_tokens' must be in [1, " + std::to_string(kMaxTokensLimit) + "]");
    sampling::SamplerParams sp;
    sp.temperature =
        field<float>(body, "temperature", 1.0f, Json::value_t::number_float, "a number");
    sp.top_p = field<float>(body, "top_p", 1.0f, Json::value_t::number_float, "a number");
    sp.seed =
        uint64_t(field<int64_t>(body, "seed", 0, Json::value_t::number_integer, "an integer"));
    if (body.contains("stop") && !body["stop"].is_null()) {
      const Json& stop = body["stop"];
      if (stop.is_string()) {
        sp.stop_strings.push_back(stop.get<std::string>());
      } else if (stop.is_array() && stop.size() <= 4 &&
                 std::all_of(stop.begin(), stop.end(),
                             [](const Json& s) { return s.is_string(); })) {
        for (const Json& s : stop) sp.stop_strings.push_back(s.get<std::string>());
      } else {
        fail(StatusCode::kInvalidArgument, "'stop' must be a string or up to 4 strings");
      }
    }
    const text::Tokenizer& tok = *text.tokenizer;
    if (tok.eos_id() >= 0) sp.stop_tokens.push_back(tok.eos_id());
    auto sampler = sampling::Sampler::create(sp);
    throw_if_error(sampler.status());
    r.sampler = std::move(sampler.value());
    r.sampler->set_tokenizer(text.tokenizer);
    return r;
  }

  // Runs a request on a fresh session, handing each piece of text to on_piece.
  static int64_t common_prefix(std::span<const int32_t> a, std::span<const int32_t> b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return int64_t(i);
  }

  // A session holding the longest cached prefix of `prompt` (at most all but its last token, whose
  // logits the turn needs), from RAM or the store, or a fresh one. Under `engine`.
  std::unique_ptr<Session> session_for(std::span<const int32_t> prompt) {
    const int64_t usable = int64_t(prompt.size()) - 1;
    Cached* best = nullptr;
    int64_t best_len = 0;
    for (Cached& c : cache) {
      const int64_t len = std::min(common_prefix(c.session->tokens(), prompt), usable);
      if (len > best_len) best = &c, best_len = len;
    }
    std::unique_ptr<Session> session;
    if (best) {
      best->last_use = ++clock;
      auto fork = best->session->fork();
      throw_if_error(fork.status());
      session = std::move(fork.value());
    } else if (store) {
      auto loaded = store->load_longest_prefix(text.model, prompt.first(size_t(usable)));
      throw_if_error(loaded.status());
      session = std::move(loaded.value());
      best_len = session->position();
    } else {
      auto fresh = Session::create(text.model);
      throw_if_error(fresh.status());
      return std::move(fresh.value());
    }
    if (session->position() > best_len) throw_if_error(session->truncate(best_len));
    return session;
  }

  // Keeps a finished session for later requests (and in the store with --cache-dir).
  void remember(std::unique_ptr<Session> session) {
    if (store) throw_if_error(store->save(*session));
    cache.push_back({std::move(session), ++clock});
    if (cache.size() > max_cached) {
      auto oldest = std::min_element(
          cache.begin(), cache.end(),
          [](const Cached& a, const Cached& b) { return a.last_use < b.last_use; });
      cache.erase(oldest);
    }
  }

  // Called by an admitted request: it leaves the queue when the engine is free. `cached` gets how
  // many prompt tokens came from the prefix cache.
  TurnResult run(GenerationRequest& r, const PieceCallback& on_piece, int64_t* cached) {
    std::unique_lock<std::mutex> lock(engine);
    --metrics.waiting;
    ++metrics.running;
    struct Done {
      Metrics& m;
      ~Done() { --m.running; }
    } done{metrics};
    std::unique_ptr<Session> session = session_for(r.prompt);
    *cached = session->position();
    size_t forced_at = 0;
    TokenChooser forced;
    if (!forced_reply.empty())
      forced = [this, &forced_at](std::span<const float>) -> Result<int32_t> {
        return forced_at < forced_reply.size() ? forced_reply[forced_at++]
                                               : text.tokenizer->eos_id();
      };
    auto turn = generate_turn(*session, text.tokenizer, *r.sampler,
                              std::span<const int32_t>(r.prompt).subspan(size_t(*cached)),
                              r.max_tokens, on_piece, forced);
    throw_if_error(turn.status());
    TurnResult t = turn.value();
    t.prefill_tokens = int64_t(r.prompt.size());  // the whole prompt, cached part included
    metrics.cached_tokens += uint64_t(*cached);
    remember(std::move(session));
    metrics.prompt_tokens += uint64_t(t.prefill_tokens);
    metrics.completion_tokens += uint64_t(t.generated_tokens);
    metrics.prefill_micros += uint64_t(t.prefill_seconds * 1e6);
    metrics.decode_micros += uint64_t(t.decode_seconds * 1e6);
    return t;
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

  Json text_completion(GenerationRequest& r) {
    int64_t cached = 0;
    const TurnResult turn = run(
        r, [](const std::string&) { return true; }, &cached);
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
    const Metrics& m = metrics;
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
    return out;
  }

  Json chat_completion(GenerationRequest& r) {
    int64_t cached = 0;
    const TurnResult turn = run(
        r, [](const std::string&) { return true; }, &cached);
    const Json message = message_of(turn, r.chat.thinking);
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

}  // namespace

int command_serve(const Args& args) {
  Args model_args = args;
  if (args.has("demo")) model_args.options["preset"] = "demo";
  auto loaded = load_text_model(model_args);
  if (!loaded) return report(loaded.status(), "serve");
  Server server;
  server.text = loaded.value();
  server.model_id = args.has("demo") ? "dsv4-demo" : "dsv4";
  server.api_key = args.get("api-key");
  if (const char* forced = std::getenv("DSV4_SERVE_FORCED_REPLY")) {
    auto ids = server.text.tokenizer->encode(forced);
    if (!ids) return report(ids.status(), "serve");
    server.forced_reply = std::move(ids.value());
    std::fprintf(stderr, "dsv4 serve: test hook: every reply is DSV4_SERVE_FORCED_REPLY\n");
  }
  if (args.has("cache-dir")) {
    auto store = PrefixStore::open(args.get("cache-dir"));
    if (!store) return report(store.status(), "serve");
    server.store = std::make_unique<PrefixStore>(std::move(store.value()));
  }
  if (args.has("queue") &&
      (!parse_int(args.get("queue"), &server.max_queue) || server.max_queue < 1))
    return report(Status(StatusCode::kInvalidArgument, "--queue must be a positive integer"),
                  "serve");
  const std::string host = args.get("host", "127.0.0.1");
  int64_t port = 8080;
  if (args.has("port") && (!parse_int(args.get("port"), &port) || port < 0 || port > 65535))
    return report(Status(StatusCode::kInvalidArgument, "--port must be in [0, 65535]"), "serve");

  httplib::Server http;
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
    if (!server.authorized(req, res)) return;
    Json body;
    if (!parse_body(req, res, &body)) return;
    auto prepared = capture_result([&] { return server.prepare_chat(body); });
    if (!prepared) return send_refusal(res, prepared.status());
    auto request = std::make_shared<Server::GenerationRequest>(std::move(prepared.value()));
    if (!server.admit(res)) return;
    ++server.metrics.requests;
    if (!request->stream) {
      Result<Json> answer = capture_result([&] { return server.chat_completion(*request); });
      if (!answer) {
        ++server.metrics.failed;
        return send_refusal(res, answer.status());
      }
      return res.set_content(answer.value().dump(), "application/json");
    }
    // Server-sent events: a chunk per delta, the tool calls and the finish reason at the end,
    // then [DONE]. A client that goes away stops the generation at its next token.
    res.set_chunked_content_provider("text/event-stream", [&server, request](
                                                              size_t, httplib::DataSink& sink) {
      const Json base = server.envelope("chat.completion.chunk");
      auto send = [&sink](const Json& chunk) {
        const std::string event = "data: " + chunk.dump() + "\n\n";
        return sink.is_writable() && sink.write(event.data(), event.size());
      };
      auto delta_chunk = [&base](Json delta, const Json& finish) {
        Json chunk = base;
        chunk["choices"] =
            Json::array({{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", finish}}});
        return chunk;
      };
      DeltaSplitter splitter(request->chat.thinking);
      if (!send(delta_chunk({{"role", "assistant"}, {"content", ""}}, nullptr))) return false;
      int64_t cached = 0;
      auto turn = capture_result([&] {
        return server.run(
            *request,
            [&](const std::string& piece) {
              const auto [reasoning, content] = splitter.push(piece);
              Json delta = Json::object();
              if (!reasoning.empty()) delta["reasoning_content"] = reasoning;
              if (!content.empty()) delta["content"] = content;
              return delta.empty() || send(delta_chunk(delta, nullptr));
            },
            &cached);
      });
      if (!turn) {
        if (turn.status().code() != StatusCode::kCancelled) {
          ++server.metrics.failed;
          send(Json{{"error", {{"message", turn.status().message()}, {"type", "server_error"}}}});
        }
        sink.done();
        return true;
      }
      bool parsed = false;
      const Json message = server.message_of(turn.value(), request->chat.thinking, &parsed);
      Json last = Json::object();
      // What the deltas have not carried yet. Text outside the format was streamed as it
      // came (reasoning while no </think> showed): only its unsent tail follows, as content.
      const std::string reasoning =
          parsed ? remainder(message.value("reasoning_content", ""), splitter.reasoning_sent())
                 : "";
      const std::string content =
          !parsed
              ? remainder(turn.value().text, splitter.reasoning_sent() + splitter.content_sent())
          : message["content"].is_string() ? remainder(message["content"], splitter.content_sent())
                                           : "";
      if (!reasoning.empty()) last["reasoning_content"] = reasoning;
      if (!content.empty()) last["content"] = content;
      if (message.contains("tool_calls") && !message["tool_calls"].empty()) {
        Json calls = message["tool_calls"];
        for (size_t i = 0; i < calls.size(); ++i) calls[i]["index"] = i;
        last["tool_calls"] = calls;
      }
      Json finish = delta_chunk(last, Server::finish_reason(turn.value(), message));
      finish["usage"] = Server::usage_of(turn.value(), cached);
      if (send(finish)) {
        const std::string done = "data: [DONE]\n\n";
        sink.write(done.data(), done.size());
      }
      sink.done();
      return true;
    });
  });
  http.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    if (!server.authorized(req, res)) return;
    Json body;
    if (!parse_body(req, res, &body)) return;
    auto prepared = capture_result([&] { return server.prepare_completion(body); });
    if (!prepared) return send_refusal(res, prepared.status());
    if (!server.admit(res)) return;
    ++server.metrics.requests;
    Result<Json> answer = capture_result([&] { return server.text_completion(prepared.value()); });
    if (!answer) {
      ++server.metrics.failed;
      return send_refusal(res, answer.status());
    }
    res.set_content(answer.value().dump(), "application/json");
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
  std::printf("dsv4 serve: %s on http://%s:%d\n", server.text.description.c_str(), host.c_str(),
              bound);
  std::fflush(stdout);
  return http.listen_after_bind() ? 0 : 1;
}

}  // namespace dsv4::cli
