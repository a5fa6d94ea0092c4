#include "serve_request.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

namespace dsv4::cli {
namespace {

using Json = nlohmann::json;
using TokenizerPtr = std::shared_ptr<const text::Tokenizer>;

// A request field of an expected JSON type (absent or null: the default).
template <class T>
T field(const Json& body, const char* name, T fallback, Json::value_t type, const char* what) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  const Json& v = body[name];
  const bool ok = type == Json::value_t::number_float     ? v.is_number()
                  : type == Json::value_t::number_integer ? v.is_number_integer()
                                                          : v.type() == type;
  if (!ok) fail(StatusCode::kInvalidArgument, std::string("'") + name + "' must be " + what);
  if constexpr (std::is_floating_point_v<T>) {
    // Checked as a double first: converting one outside T's range is undefined behaviour.
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::abs(d) > double(std::numeric_limits<T>::max()))
      fail(StatusCode::kInvalidArgument, std::string("'") + name + "' is out of range");
    return T(d);
  }
  return v.get<T>();
}

// The fields every generation takes: stream, max_tokens, temperature, top_p, seed, stop.
GenerationRequest prepare_sampling(const Json& body, const TokenizerPtr& tokenizer) {
  GenerationRequest r;
  r.stream = field<bool>(body, "stream", false, Json::value_t::boolean, "a boolean");
  r.max_tokens = field<int64_t>(body, "max_tokens", kDefaultMaxTokens,
                                Json::value_t::number_integer, "an integer");
  if (r.max_tokens < 1 || r.max_tokens > kMaxTokensLimit)
    fail(StatusCode::kInvalidArgument,
         "'max_tokens' must be in [1, " + std::to_string(kMaxTokensLimit) + "]");
  sampling::SamplerParams sp;
  sp.temperature = field<float>(body, "temperature", 1.0f, Json::value_t::number_float, "a number");
  sp.top_p = field<float>(body, "top_p", 1.0f, Json::value_t::number_float, "a number");
  sp.seed = uint64_t(field<int64_t>(body, "seed", 0, Json::value_t::number_integer, "an integer"));
  if (body.contains("stop") && !body["stop"].is_null()) {
    const Json& stop = body["stop"];
    if (stop.is_string()) {
      sp.stop_strings.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4 &&
               std::all_of(stop.begin(), stop.end(), [](const Json& s) { return s.is_string(); })) {
      for (const Json& s : stop) sp.stop_strings.push_back(s.get<std::string>());
    } else {
      fail(StatusCode::kInvalidArgument, "'stop' must be a string or up to 4 strings");
    }
  }
  const text::Tokenizer& tok = *tokenizer;
  if (tok.eos_id() >= 0) sp.stop_tokens.push_back(tok.eos_id());
  auto sampler = sampling::Sampler::create(sp);
  throw_if_error(sampler.status());
  r.sampler = std::move(sampler.value());
  r.sampler->set_tokenizer(tokenizer);
  return r;
}

// The messages as the encoder takes them: request-level tools go on the system message.
Json messages_with_tools(const Json& body) {
  Json messages = body.at("messages");
  if (!body.contains("tools") || body["tools"].is_null()) return messages;
  if (!body["tools"].is_array()) fail(StatusCode::kInvalidArgument, "'tools' must be an array");
  if (messages.empty() || !messages[0].is_object() || messages[0].value("role", "") != "system")
    messages.insert(messages.begin(), Json{{"role", "system"}, {"content", ""}});
  messages[0]["tools"] = body["tools"];
  return messages;
}

GenerationRequest prepare_chat_impl(const Json& body, const TokenizerPtr& tokenizer) {
  if (!body.is_object()) fail(StatusCode::kInvalidArgument, "the body must be a JSON object");
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    fail(StatusCode::kInvalidArgument, "'messages' must be a non-empty array");
  GenerationRequest r = prepare_sampling(body, tokenizer);
  r.chat.thinking = field<bool>(body, "thinking", false, Json::value_t::boolean, "a boolean");
  r.chat.reasoning_effort =
      field<std::string>(body, "reasoning_effort", "", Json::value_t::string, "a string");
  if (!r.chat.reasoning_effort.empty()) r.chat.thinking = true;
  auto rendered = text::render_chat(messages_with_tools(body).dump(), r.chat);
  throw_if_error(rendered.status());
  auto prompt = text::tokenize_prompt(*tokenizer, rendered.value());
  throw_if_error(prompt.status());
  r.prompt = std::move(prompt.value());
  return r;
}

// /v1/completions: the prompt text as it is (after the BOS), no chat format.
GenerationRequest prepare_completion_impl(const Json& body, const TokenizerPtr& tokenizer) {
  if (!body.is_object()) fail(StatusCode::kInvalidArgument, "the body must be a JSON object");
  if (!body.contains("prompt") || !body["prompt"].is_string())
    fail(StatusCode::kInvalidArgument, "'prompt' must be a string");
  GenerationRequest r = prepare_sampling(body, tokenizer);
  const text::Tokenizer& tok = *tokenizer;
  auto ids = tok.encode(body["prompt"].get<std::string>());
  throw_if_error(ids.status());
  if (tok.bos_id() >= 0) r.prompt.push_back(tok.bos_id());
  r.prompt.insert(r.prompt.end(), ids.value().begin(), ids.value().end());
  return r;
}

}  // namespace

GenerationRequest prepare_chat(const Json& body, const TokenizerPtr& tokenizer) {
  return prepare_chat_impl(body, tokenizer);
}

GenerationRequest prepare_completion(const Json& body, const TokenizerPtr& tokenizer) {
  return prepare_completion_impl(body, tokenizer);
}

}  // namespace dsv4::cli
