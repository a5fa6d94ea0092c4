// The text commands: batch tools over JSON Lines (tokenize, chat-render, chat-parse), one chat
// turn (run) and an interactive chat that keeps its session between turns (chat).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.hpp"
#include "dsv4/text/chat.hpp"
#include "text_generation.hpp"

namespace dsv4::cli {
namespace {

using json = nlohmann::ordered_json;

// Runs `per_line` on every line of stdin and prints its JSON answer, or {"error": …} when the
// line is not JSON or `per_line` fails. The exit status is 0 when stdin was read to its end.
template <class F>
int for_each_jsonl_line(F&& per_line) {
  std::string line;
  while (std::getline(std::cin, line)) {
    json answer;
    try {
      const json in = json::parse(line);
      Result<json> r = per_line(in);
      answer = r ? r.value() : json{{"error", r.status().message()}};
    } catch (const json::exception& e) {
      answer = json{{"error", std::string("input is not valid JSON: ") + e.what()}};
    }
    std::printf("%s\n", answer.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    std::fflush(stdout);
  }
  return 0;
}

Status require_jsonl(const Args& args) {
  if (!args.has("jsonl"))
    return Status(StatusCode::kInvalidArgument, "only --jsonl mode exists: JSON Lines on stdin");
  return Status::ok();
}

}  // namespace

int command_tokenize(const Args& args) {
  if (Status s = require_jsonl(args); !s) return report(s, "tokenize");
  auto tok = load_tokenizer_arg(args);
  if (!tok) return report(tok.status(), "tokenize");
  const text::EncodeOptions options{.match_added_tokens = args.has("special")};
  return for_each_jsonl_line([&](const json& in) -> Result<json> {
    if (!in.is_string()) return Status(StatusCode::kInvalidArgument, "expected a JSON string");
    auto ids = tok.value()->encode(in.get<std::string>(), options);
    if (!ids) return ids.status();
    return json(ids.value());
  });
}

int command_chat_render(const Args& args) {
  if (Status s = require_jsonl(args); !s) return report(s, "chat-render");
  auto tok = load_tokenizer_arg(args);
  if (!tok) return report(tok.status(), "chat-render");
  return for_each_jsonl_line([&](const json& in) -> Result<json> {
    if (!in.is_object() || !in.contains("messages"))
      return Status(StatusCode::kInvalidArgument, "expected an object with \"messages\"");
    auto options = text::chat_options_from_json(in.value("args", json::object()).dump(),
                                                in.value("variant", "v4"));
    if (!options) return options.status();
    auto prompt = text::render_chat(in["messages"].dump(), options.value());
    if (!prompt) return prompt.status();
    auto ids = text::tokenize_prompt(*tok.value(), prompt.value());
    if (!ids) return ids.status();
    return json{{"rendered", prompt->text}, {"ids", ids.value()}};
  });
}

int command_chat_parse(const Args& args) {
  if (Status s = require_jsonl(args); !s) return report(s, "chat-parse");
  return for_each_jsonl_line([&](const json& in) -> Result<json> {
    if (!in.is_object() || !in.contains("completion") || !in["completion"].is_string())
      return Status(StatusCode::kInvalidArgument,
                    "expected an object with a string \"completion\"");
    auto parsed = text::parse_completion(in["completion"].get<std::string>(),
                                         in.value("thinking_mode", "chat") == "thinking");
    if (!parsed) return parsed.status();
    return json::parse(parsed.value());
  });
}

namespace {

struct Conversation {
  TextModel tm;
  std::unique_ptr<Session> session;
  std::unique_ptr<sampling::Sampler> sampler;
  text::ChatOptions options;
  json history = json::array();  // every message already in the session's cache
  int64_t max_new = 256;
};

Result<Conversation> start_conversation(const Args& args, float default_temperature) {
  Conversation c;
  auto tm = load_text_model(args);
  if (!tm) return tm.status();
  c.tm = tm.value();
  auto params = sampler_params_from_args(args, *c.tm.tokenizer, default_temperature);
  if (!params) return params.status();
  auto sampler = sampling::Sampler::create(params.value());
  if (!sampler) return sampler.status();
  c.sampler = std::move(sampler.value());
  auto session_options = session_options_from_args(args);
  if (!session_options) return session_options.status();
  auto session = Session::create(c.tm.model, session_options.value());
  if (!session) return session.status();
  c.session = std::move(session.value());
  c.options.thinking = args.has("think");
  if (args.has("n") && (!parse_int(args.get("n"), &c.max_new) || c.max_new < 1))
    return Status(StatusCode::kInvalidArgument, "-n must be a positive integer");
  return c;
}

// One user turn: render only the new messages (the earlier ones are the context already in the
// cache), prefill them, stream the reply, and remember both.
Result<TurnResult> chat_turn(Conversation& c, const std::string& user_text,
                             const std::string& system) {
  json fresh = json::array();
  if (c.history.empty() && !system.empty())
    fresh.push_back({{"role", "system"}, {"content", system}});
  fresh.push_back({{"role", "user"}, {"content", user_text}});
  text::ChatOptions options = c.options;
  options.context_json = c.history.empty() ? std::string() : c.history.dump();
  auto prompt = text::render_chat(fresh.dump(), options);
  if (!prompt) return prompt.status();
  auto ids = text::tokenize_prompt(*c.tm.tokenizer, prompt.value());
  if (!ids) return ids.status();
  auto turn = generate_turn(*c.session, c.tm.tokenizer, *c.sampler, ids.value(), c.max_new, stdout);
  if (!turn) return turn.status();
  for (const json& m : fresh) c.history.push_back(m);
  json reply = {{"role", "assistant"}, {"content", turn->text}};
  const std::string eos(c.tm.tokenizer->token_bytes(c.tm.tokenizer->eos_id()));
  if (auto parsed = text::parse_completion(turn->text + eos, c.options.thinking); parsed) {
    const json p = json::parse(parsed.value());
    reply["content"] = p["content"];
    reply["reasoning_content"] = p["reasoning_content"];
  }
  c.history.push_back(reply);
  return turn;
}

}  // namespace

int command_run(const Args& args) {
  if (args.positional.size() != 1)
    return report(Status(StatusCode::kInvalidArgument,
                         "give exactly one prompt: dsv4 run --model DIR \"prompt\""),
                  "run");
  auto c = start_conversation(args, 0.7f);
  if (!c) return report(c.status(), "run");
  auto turn = chat_turn(c.value(), args.positional[0], args.get("system"));
  std::printf("\n");
  std::fflush(stdout);
  if (!turn) return report(turn.status(), "run");
  print_turn_stats(turn.value(), stderr);
  return 0;
}

int command_chat(const Args& args) {
  auto c = start_conversation(args, 0.7f);
  if (!c) return report(c.status(), "chat");
  std::fprintf(stderr, "dsv4 chat with %s%s. /exit or Ctrl-D ends it.\n", c->tm.description.c_str(),
               c->options.thinking ? " (thinking mode)" : "");
  const std::string system = args.get("system");
  std::string line;
  while (true) {
    std::printf("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    auto turn = chat_turn(c.value(), line, system);
    std::printf("\n");
    if (!turn) return report(turn.status(), "chat");
    print_turn_stats(turn.value(), stdout);
  }
  std::printf("\n");
  return 0;
}

}  // namespace dsv4::cli
