// dsv4 serve: an OpenAI-compatible HTTP server over the engine and the text path.
//
// This first slice answers one request at a time: GET /health, GET /v1/models and non-streaming
// POST /v1/chat/completions (messages through the V4 chat encoding, request-level tools on the
// system message, thinking and reasoning_effort, DSML tool calls returned as `tool_calls`, the
// reasoning as `reasoning_content`, usage counts), behind an optional API key compared in
// constant time, on loopback unless told otherwise. Requests it does not serve yet (streaming)
// are refused with an OpenAI-style error, never ignored.
#include <httplib.h>

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

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

struct Server {
  TextModel text;
  std::string model_id;
  std::string api_key;
  std::mutex engine;  // one generation at a time in this slice

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

  Json chat_completion(const Json& body) {
    if (!body.is_object()) fail(StatusCode::kInvalidArgument, "the body must be a JSON object");
    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
      fail(StatusCode::kInvalidArgument, "'messages' must be a non-empty array");
    if (field<bool>(body, "stream", false, Json::value_t::boolean, "a boolean"))
      fail(StatusCode::kUnsupported, "streaming responses are not served yet (stream: true)");
    text::ChatOptions chat;
    chat.thinking = field<bool>(body, "thinking", false, Json::value_t::boolean, "a boolean");
    chat.reasoning_effort =
        field<std::string>(body, "reasoning_effort", "", Json::value_t::string, "a string");
    if (!chat.reasoning_effort.empty()) chat.thinking = true;
    const int64_t max_tokens = field<int64_t>(body, "max_tokens", kDefaultMaxTokens,
                                              Json::value_t::number_integer, "an integer");
    if (max_tokens < 1 || max_tokens > kMaxTokensLimit)
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
    sampler.value()->set_tokenizer(text.tokenizer);

    auto rendered = text::render_chat(messages_with_tools(body).dump(), chat);
    throw_if_error(rendered.status());
    auto prompt = text::tokenize_prompt(tok, rendered.value());
    throw_if_error(prompt.status());

    std::lock_guard<std::mutex> lock(engine);
    auto session = Session::create(text.model);
    throw_if_error(session.status());
    auto turn = generate_turn(*session.value(), text.tokenizer, *sampler.value(), prompt.value(),
                              max_tokens, nullptr);
    throw_if_error(turn.status());
    const TurnResult& r = turn.value();
    // The parser wants the turn as the model closes it (with the EOS).
    const std::string closed =
        r.text + (r.ended_by_stop ? std::string(tok.token_piece(tok.eos_id())) : "");
    Json message;
    auto parsed = text::parse_completion(closed, chat.thinking);
    if (parsed) {
      message = Json::parse(parsed.value());
    } else {
      message = {{"role", "assistant"}, {"content", r.text}};  // not in the format: plain text
    }
    const bool calls = message.contains("tool_calls") && !message["tool_calls"].empty();
    const std::string finish = calls ? "tool_calls" : r.ended_by_stop ? "stop" : "length";
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    return Json{
        {"id", "chatcmpl-" + std::to_string(now.count())},
        {"object", "chat.completion"},
        {"created", std::chrono::duration_cast<std::chrono::seconds>(now).count()},
        {"model", model_id},
        {"choices", Json::array({{{"index", 0}, {"message", message}, {"finish_reason", finish}}})},
        {"usage",
         {{"prompt_tokens", r.prefill_tokens},
          {"completion_tokens", r.generated_tokens},
          {"total_tokens", r.prefill_tokens + r.generated_tokens},
          {"prompt_tokens_details", {{"cached_tokens", 0}}}}}};
  }
};

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

}  // namespace

int command_serve(const Args& args) {
  Args model_args = args;
  if (args.has("demo")) model_args.options["preset"] = "demo";
  auto loaded = load_text_model(model_args);
  if (!loaded) return report(loaded.status(), "serve");
  Server server{loaded.value(), args.has("demo") ? "dsv4-demo" : "dsv4", args.get("api-key"), {}};
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
    try {
      body = Json::parse(req.body);
    } catch (const std::exception& e) {
      return send_error(res, 400, "invalid_request_error",
                        std::string("the body is not valid JSON: ") + e.what());
    }
    Result<Json> answer = capture_result([&] { return server.chat_completion(body); });
    if (!answer)
      return send_error(res, http_status(answer.status().code()),
                        answer.status().code() == StatusCode::kInvalidArgument
                            ? "invalid_request_error"
                            : "server_error",
                        answer.status().message());
    res.set_content(answer.value().dump(), "application/json");
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
