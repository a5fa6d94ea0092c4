// The V4 prompt format, step by step as FORMAT.md §6 describes DeepSeek's encoder:
// merge tool results into user turns, drop old reasoning, render each message, and add the
// transition to the assistant after the last user turn.
#include "dsv4/text/chat.hpp"

#include <algorithm>

#include "python_json.hpp"
#include "utf8.hpp"

namespace dsv4::text {

namespace {

using J = ordered_json;

constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
constexpr std::string_view kUserToken = "<｜User｜>";
constexpr std::string_view kAssistantToken = "<｜Assistant｜>";
constexpr std::string_view kReminderToken = "<｜latest_reminder｜>";
constexpr std::string_view kThink = "<think>";
constexpr std::string_view kThinkEnd = "</think>";
constexpr std::string_view kDsml = "｜DSML｜";
constexpr std::string_view kToolCallsOpen = "\n\n<｜DSML｜tool_calls>\n";
constexpr std::string_view kToolCallsClose = "\n</｜DSML｜tool_calls>";

constexpr std::string_view kEffortAbsoluteMaximum =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to "
    "resolve the root cause, rigorously stress-testing your logic against all potential paths, "
    "edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n";
constexpr std::string_view kEffortBeyondMaximum =
    "Reasoning Effort: Beyond maximum — exhaustive, relentless, and uncompromising.\n"
    "You MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: "
    "exhaustively decompose the problem into its most fundamental components, trace every causal "
    "chain to its root, and resolve the underlying cause rather than any surface symptom.\n"
    "Do not stop reasoning until you have independently verified the solution from multiple "
    "angles and are certain that no assumption remains unchecked and no error remains "
    "undiscovered.\n\n";

constexpr std::string_view kToolsHeader =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools "
    "by writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" "
    "string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types "
    "(numbers, booleans, arrays, objects), pass the value in JSON format and set "
    "`string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning "
    "inside <think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";
constexpr std::string_view kToolsFooter =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke "
    "tool calls.\n";
constexpr std::string_view kResponseFormatHeader =
    "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

// The task tokens the encoder knows (`<｜NAME｜>`).
constexpr std::string_view kTasks[] = {"action", "query", "authority",
                                       "domain", "title", "read_url"};

[[noreturn]] void bad_message(const std::string& why) {
  fail(StatusCode::kInvalidArgument, "chat messages: " + why);
}

J parse_json(std::string_view text, const char* what) {
  try {
    return J::parse(text);
  } catch (const J::exception& e) {
    fail(StatusCode::kInvalidArgument, std::string(what) + " is not valid JSON: " + e.what());
  }
}

// A string field: absent or null reads as "".
std::string text_field(const J& msg, const char* key) {
  if (!msg.contains(key) || msg[key].is_null()) return {};
  if (!msg[key].is_string()) bad_message(std::string("'") + key + "' must be a string");
  return msg[key].get<std::string>();
}

// The type of a content part ("text" for a bare string).
std::string part_type(const J& part) {
  if (part.is_string()) return "text";
  if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
    bad_message("a content part must be a string or an object with a string 'type'");
  return part["type"].get<std::string>();
}
std::string part_text(const J& part) {
  return part.is_string() ? part.get<std::string>() : text_field(part, "text");
}

// Content given as a list of parts: the text parts joined by blank lines (other parts, such as
// images, carry no text here).
std::string content_text(const J& content) {
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_message("'content' must be a string or a list of parts");
  std::string out;
  bool first = true;
  for (const J& part : content) {
    if (part_type(part) != "text") continue;
    out += (first ? "" : "\n\n") + part_text(part);
    first = false;
  }
  return out;
}

std::string task_of(const J& msg) {
  if (!msg.contains("task") || msg["task"].is_null()) return {};
  if (!msg["task"].is_string()) bad_message("'task' must be a string");
  const std::string task = msg["task"].get<std::string>();
  if (std::find(std::begin(kTasks), std::end(kTasks), task) == std::end(kTasks))
    bad_message("unknown task '" + task + "'");
  return task;
}

// A message after merging: user turns carry their blocks (text and tool results).
struct Block {
  enum Kind { kText, kToolResult, kUnsupported } kind;
  std::string text;         // the text, the tool result's content, or the unsupported part's type
  std::string tool_use_id;  // tool results only
};

// A user message's blocks: its text, or one block per part of a list (parts other than text,
// such as images, become "[Unsupported TYPE]" in the prompt, as the reference renders them).
std::vector<Block> user_blocks(const J& content) {
  if (!content.is_array()) return {Block{Block::kText, content_text(content), {}}};
  std::vector<Block> blocks;
  for (const J& part : content) {
    const std::string type = part_type(part);
    if (type == "text") {
      blocks.push_back({Block::kText, part_text(part), {}});
    } else {
      blocks.push_back({Block::kUnsupported, type, {}});
    }
  }
  return blocks;
}
struct Message {
  std::string role;
  J fields;  // the original message (content, tools, tool_calls, reasoning_content, task, …)
  std::vector<Block> blocks;
  bool from_context = false;
};

// Step 1: tool messages become tool_result blocks; consecutive user/tool messages join one user
// turn unless that turn carries a task.
std::vector<Message> merge_tool_results(const J& context, const J& messages) {
  std::vector<Message> merged;
  auto add = [&](const J& msg, bool from_context) {
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
      bad_message("every message must be an object with a string 'role'");
    const std::string role = msg["role"].get<std::string>();
    static const char* kRoles[] = {"system",    "developer", "user",
                                   "assistant", "tool",      "latest_reminder"};
    if (std::none_of(std::begin(kRoles), std::end(kRoles),
                     [&](const char* r) { return role == r; }))
      bad_message("unknown role '" + role + "'");
    (void)task_of(msg);  // validates
    if (role != "user" && role != "tool") {
      merged.push_back({role, msg, {}, from_context});
      return;
    }
    std::vector<Block> blocks =
        role == "tool"
            ? std::vector<Block>{Block{Block::kToolResult, content_text(msg.value("content", J())),
                                       text_field(msg, "tool_call_id")}}
            : user_blocks(msg.value("content", J()));
    Message* last = merged.empty() ? nullptr : &merged.back();
    if (last && last->role == "user" && last->from_context == from_context &&
        task_of(last->fields).empty()) {
      last->blocks.insert(last->blocks.end(), blocks.begin(), blocks.end());
      return;
    }
    J fields = role == "user" ? msg : J{{"role", "user"}};
    fields["role"] = "user";
    merged.push_back({"user", std::move(fields), std::move(blocks), from_context});
  };
  for (const J& m : context) add(m, true);
  for (const J& m : messages) add(m, false);
  return merged;
}

std::string call_id(const J& call) {
  return call.is_object() ? text_field(call, "id") : std::string();
}

// Within each user turn, tool results follow the order of the preceding assistant's calls
// (results with an unknown id sort first); text blocks keep their places.
void order_tool_results(std::vector<Message>& merged) {
  const J* calls = nullptr;
  for (Message& m : merged) {
    if (m.role == "assistant") {
      calls = m.fields.contains("tool_calls") && m.fields["tool_calls"].is_array()
                  ? &m.fields["tool_calls"]
                  : nullptr;
      continue;
    }
    if (m.role != "user" || !calls) continue;
    auto rank = [&](const Block& b) {
      for (size_t i = 0; i < calls->size(); ++i)
        if (!b.tool_use_id.empty() && call_id((*calls)[i]) == b.tool_use_id) return i;
      return size_t(0);
    };
    std::vector<size_t> slots;
    std::vector<Block> results;
    for (size_t i = 0; i < m.blocks.size(); ++i)
      if (m.blocks[i].kind == Block::kToolResult)
        slots.push_back(i), results.push_back(m.blocks[i]);
    std::stable_sort(results.begin(), results.end(),
                     [&](const Block& a, const Block& b) { return rank(a) < rank(b); });
    for (size_t k = 0; k < slots.size(); ++k) m.blocks[slots[k]] = std::move(results[k]);
  }
}

int64_t last_user_index(const std::vector<Message>& msgs) {
  int64_t last = -1;
  for (size_t i = 0; i < msgs.size(); ++i)
    if (msgs[i].role == "user" || msgs[i].role == "developer") last = int64_t(i);
  return last;
}

// Step 4: in thinking mode with dropping, turns before the last user turn lose their reasoning
// and earlier developer messages go.
void drop_old_reasoning(std::vector<Message>& msgs) {
  const int64_t last = last_user_index(msgs);
  std::vector<Message> kept;
  for (size_t i = 0; i < msgs.size(); ++i) {
    Message& m = msgs[i];
    if (int64_t(i) < last) {
      if (m.role == "developer") continue;
      if (m.role == "assistant") m.fields.erase("reasoning_content");
    }
    kept.push_back(std::move(m));
  }
  msgs = std::move(kept);
}

class PromptWriter {
 public:
  void protocol(std::string_view s) {
    if (s.empty()) return;
    if (!prompt_.protocol_spans.empty() &&
        prompt_.protocol_spans.back().second == prompt_.text.size()) {
      prompt_.protocol_spans.back().second += s.size();
    } else {
      prompt_.protocol_spans.emplace_back(prompt_.text.size(), prompt_.text.size() + s.size());
    }
    prompt_.text += s;
  }
  void content(std::string_view s) { prompt_.text += s; }
  RenderedPrompt finish() { return std::move(prompt_); }

 private:
  RenderedPrompt prompt_;
};

// The arguments of a call as (name, value, is_string) parameters: a JSON object's members, or
// one string parameter "arguments" when the text is not a JSON object.
std::vector<std::tuple<std::string, std::string, bool>> call_parameters(const J& arguments) {
  J object;
  if (arguments.is_object()) {
    object = arguments;
  } else if (arguments.is_string()) {
    try {
      object = J::parse(arguments.get<std::string>());
    } catch (const J::exception&) {
      object = J();
    }
    if (!object.is_object()) return {{"arguments", arguments.get<std::string>(), true}};
  } else if (!arguments.is_null()) {
    bad_message("tool call 'arguments' must be a JSON string or object");
  }
  std::vector<std::tuple<std::string, std::string, bool>> params;
  for (const auto& [key, value] : object.items()) {
    if (value.is_string()) {
      params.emplace_back(key, value.get<std::string>(), true);
    } else {
      params.emplace_back(key, python_dumps(value), false);
    }
  }
  return params;
}

void write_tool_calls(PromptWriter& w, const J& calls) {
  if (!calls.is_array()) bad_message("'tool_calls' must be a list");
  if (calls.empty()) return;
  w.protocol(kToolCallsOpen);
  for (size_t c = 0; c < calls.size(); ++c) {
    const J& call = calls[c];
    if (!call.is_object()) bad_message("a tool call must be an object");
    const J& fn = call.contains("function") ? call["function"] : call;
    if (c) w.protocol("\n");
    w.protocol("<｜DSML｜invoke name=\"");
    w.content(text_field(fn, "name"));
    w.protocol("\">\n");
    const auto params = call_parameters(fn.value("arguments", J()));
    for (size_t p = 0; p < params.size(); ++p) {
      const auto& [key, value, is_string] = params[p];
      if (p) w.protocol("\n");
      w.protocol("<｜DSML｜parameter name=\"");
      w.content(key);
      w.protocol(is_string ? "\" string=\"true\">" : "\" string=\"false\">");
      w.content(value);
      w.protocol("</｜DSML｜parameter>");
    }
    w.protocol("\n</｜DSML｜invoke>");
  }
  w.protocol(kToolCallsClose);
}

// Tools and response format, appended to system and developer messages.
void write_instructions(PromptWriter& w, const J& msg) {
  if (msg.contains("tools") && !msg["tools"].is_null()) {
    if (!msg["tools"].is_array()) bad_message("'tools' must be a list");
    w.protocol("\n\n");
    w.protocol(kToolsHeader);
    bool first = true;
    for (const J& tool : msg["tools"]) {
      if (!first) w.protocol("\n");
      first = false;
      w.content(
          python_dumps(tool.is_object() && tool.contains("function") ? tool["function"] : tool));
    }
    w.protocol(kToolsFooter);
  }
  if (msg.contains("response_format") && !msg["response_format"].is_null()) {
    w.protocol(kResponseFormatHeader);
    w.content(python_dumps(msg["response_format"]));
  }
}

std::string_view effort_prefix(const ChatOptions& o) {
  const std::string& e = o.reasoning_effort;
  if (o.variant == ChatVariant::kV4) {
    if (e.empty() || e == "high") return {};
    if (e == "max") return kEffortAbsoluteMaximum;
  } else {
    if (e.empty() || e == "low") return {};
    if (e == "high") return kEffortAbsoluteMaximum;
    if (e == "max") return kEffortBeyondMaximum;
  }
  fail(StatusCode::kInvalidArgument, "reasoning effort '" + e + "' is not one of this variant's");
}

bool has_tools(const std::vector<Message>& msgs) {
  return std::any_of(msgs.begin(), msgs.end(), [](const Message& m) {
    return m.fields.contains("tools") && !m.fields["tools"].is_null();
  });
}

// The prompt text of `messages` (throws dsv4::Error, or a JSON exception for a field of the
// wrong type, which render_chat reports as the caller's error).
RenderedPrompt render_messages(std::string_view messages_json, const ChatOptions& options) {
  const J messages = parse_json(messages_json, "messages");
  if (!messages.is_array()) bad_message("expected a JSON array of messages");
  const J context =
      options.context_json.empty() ? J::array() : parse_json(options.context_json, "context");
  if (!context.is_array()) bad_message("the context must be a JSON array of messages");
  const std::string_view effort = effort_prefix(options);

  std::vector<Message> msgs = merge_tool_results(context, messages);
  order_tool_results(msgs);
  const bool drop = options.drop_thinking && !has_tools(msgs);
  if (options.thinking && drop) drop_old_reasoning(msgs);
  const int64_t last_user = last_user_index(msgs);
  // Reasoning is shown (and the turn opened with <think>) from the last user turn on, or
  // everywhere when nothing is dropped.
  auto keeps_reasoning = [&](int64_t i) { return !drop || i >= last_user; };

  PromptWriter w;
  if (options.add_bos && context.empty()) w.protocol(kBos);
  for (size_t idx = 0; idx < msgs.size(); ++idx) {
    const Message& m = msgs[idx];
    const auto i = int64_t(idx);
    if (m.from_context) continue;
    if (i == 0 && options.thinking) w.protocol(effort);
    const J& f = m.fields;
    if (m.role == "system") {
      w.content(content_text(f.value("content", J())));
      write_instructions(w, f);
    } else if (m.role == "developer") {
      w.protocol(kUserToken);
      w.content(content_text(f.value("content", J())));
      write_instructions(w, f);
    } else if (m.role == "user") {
      w.protocol(kUserToken);
      for (size_t b = 0; b < m.blocks.size(); ++b) {
        if (b) w.protocol("\n\n");
        if (m.blocks[b].kind == Block::kText) {
          w.content(m.blocks[b].text);
        } else if (m.blocks[b].kind == Block::kUnsupported) {
          w.protocol("[Unsupported ");
          w.content(m.blocks[b].text);
          w.protocol("]");
        } else {
          w.protocol("<tool_result>");
          w.content(m.blocks[b].text);
          w.protocol("</tool_result>");
        }
      }
    } else if (m.role == "latest_reminder") {
      w.protocol(kReminderToken);
      w.content(content_text(f.value("content", J())));
    } else if (m.role == "assistant") {
      const bool after_task = i > 0 && !task_of(msgs[idx - 1].fields).empty();
      if (options.thinking && !after_task && (!drop || i > last_user)) {
        w.content(text_field(f, "reasoning_content"));
        w.protocol(kThinkEnd);
      }
      w.content(content_text(f.value("content", J())));
      if (f.contains("tool_calls") && !f["tool_calls"].is_null())
        write_tool_calls(w, f["tool_calls"]);
      if (!f.value("wo_eos", false)) w.protocol(kEos);
    }
    // The transition to the assistant, after the last message or before an assistant turn
    // or a reminder.
    const bool next_is_turn = idx + 1 == msgs.size() || msgs[idx + 1].role == "assistant" ||
                              msgs[idx + 1].role == "latest_reminder";
    if (!next_is_turn) continue;
    const std::string task = task_of(f);
    if (task == "action") {
      w.protocol(kAssistantToken);
      w.protocol(options.thinking ? kThink : kThinkEnd);
      w.protocol("<｜action｜>");
    } else if (!task.empty()) {
      w.protocol("<｜" + task + "｜>");
    } else if (m.role == "user" || m.role == "developer") {
      w.protocol(kAssistantToken);
      w.protocol(options.thinking && keeps_reasoning(i) ? kThink : kThinkEnd);
    }
  }
  return w.finish();
}

}  // namespace

Result<RenderedPrompt> render_chat(std::string_view messages_json, const ChatOptions& options) {
  return capture_result([&] {
    try {
      return render_messages(messages_json, options);
    } catch (const J::exception& e) {
      // A field of a type the format does not take ("wo_eos": "yes"): the caller's input.
      bad_message(std::string("a message field has the wrong type: ") + e.what());
    }
  });
}

Result<std::vector<int32_t>> tokenize_prompt(const Tokenizer& tokenizer,
                                             const RenderedPrompt& prompt) {
  return tokenizer.encode_with_added_tokens_in(prompt.text, prompt.protocol_spans);
}

Result<ChatVariant> chat_variant_from_name(std::string_view name) {
  if (name == "v4" || name.empty()) return ChatVariant::kV4;
  if (name == "v4-0731") return ChatVariant::kV4_0731;
  return Status(StatusCode::kInvalidArgument, "unknown chat variant '" + std::string(name) + "'");
}

Result<ChatOptions> chat_options_from_json(std::string_view args_json, std::string_view variant) {
  return capture_result([&] {
    ChatOptions o;
    o.variant = chat_variant_from_name(variant).value();
    const J args = args_json.empty() ? J::object() : parse_json(args_json, "chat arguments");
    if (!args.is_object())
      fail(StatusCode::kInvalidArgument, "chat arguments must be a JSON object");
    try {
      const std::string mode = args.value("thinking_mode", "chat");
      if (mode != "chat" && mode != "thinking")
        fail(StatusCode::kInvalidArgument, "thinking_mode must be \"chat\" or \"thinking\"");
      o.thinking = mode == "thinking";
      o.drop_thinking = args.value("drop_thinking", true);
      o.add_bos = args.value("add_default_bos_token", true);
      if (args.contains("reasoning_effort") && !args["reasoning_effort"].is_null())
        o.reasoning_effort = args["reasoning_effort"].get<std::string>();
      if (args.contains("context") && !args["context"].is_null())
        o.context_json = args["context"].dump();
    } catch (const J::exception& e) {
      fail(StatusCode::kInvalidArgument, std::string("chat arguments: ") + e.what());
    }
    (void)effort_prefix(o);  // validates the effort for the variant
    return o;
  });
}

// ---- parsing the model's output ----

namespace {

[[noreturn]] void bad_format(const std::string& why) { fail(StatusCode::kInvalidArgument, why); }

void reject_protocol_tokens(std::string_view text, const char* where) {
  for (std::string_view token : {kBos, kEos, kThink, kThinkEnd, kDsml})
    if (text.find(token) != std::string_view::npos)
      bad_format("Invalid format: " + std::string(token) + " inside the " + where);
}

// A cursor over the DSML block: each expect() consumes a literal or fails with its position.
class DsmlReader {
 public:
  explicit DsmlReader(std::string_view text) : text_(text) {}
  bool at(std::string_view literal) const { return text_.substr(pos_, literal.size()) == literal; }
  void expect(std::string_view literal) {
    if (!at(literal))
      bad_format("Invalid tool call format: expected '" + std::string(literal) + "' at byte " +
                 std::to_string(pos_) + " of the tool calls");
    pos_ += literal.size();
  }
  std::string until(std::string_view terminator) {
    const size_t end = text_.find(terminator, pos_);
    if (end == std::string_view::npos)
      bad_format("Invalid tool call format: unterminated, '" + std::string(terminator) +
                 "' missing");
    std::string out(text_.substr(pos_, end - pos_));
    pos_ = end + terminator.size();
    return out;
  }
  std::string_view rest() const { return text_.substr(pos_); }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

J parse_invoke(DsmlReader& r) {
  r.expect("<｜DSML｜invoke name=\"");
  const std::string name = r.until("\">\n");
  std::string arguments = "{";
  bool first = true;
  while (!r.at("\n</｜DSML｜invoke>")) {
    if (!first) r.expect("\n");
    r.expect("<｜DSML｜parameter name=\"");
    const std::string key = r.until("\" string=\"");
    const bool is_string = r.at("true\">");
    r.expect(is_string ? "true\">" : "false\">");
    const std::string value = r.until("</｜DSML｜parameter>");
    arguments += (first ? "" : ", ") + python_dumps_string(key) + ": " +
                 (is_string ? python_dumps_string(value) : value);
    first = false;
  }
  r.expect("\n</｜DSML｜invoke>");
  J call = J::object();
  call["type"] = "function";
  call["function"] = J{{"name", name}, {"arguments", arguments + "}"}};
  return call;
}

}  // namespace

Result<std::string> parse_completion(std::string_view text, bool thinking) {
  return capture_result([&] {
    if (utf8::first_invalid(text) != std::string_view::npos)
      bad_format("the completion is not valid UTF-8");
    std::string reasoning;
    std::string_view rest = text;
    if (thinking) {
      const size_t end = rest.find(kThinkEnd);
      if (end == std::string_view::npos) bad_format("Invalid thinking format: missing </think>");
      reasoning = std::string(rest.substr(0, end));
      rest = rest.substr(end + kThinkEnd.size());
    }
    const size_t eos = rest.find(kEos);
    const size_t calls = rest.find("\n\n<｜DSML｜tool_calls");
    if (eos == std::string_view::npos && calls == std::string_view::npos)
      bad_format("Invalid format: missing EOS token");
    const size_t content_end = std::min(eos, calls);
    const std::string content(rest.substr(0, content_end));
    J tool_calls = J::array();
    std::string_view after;
    if (calls < eos) {
      DsmlReader r(rest.substr(calls));
      r.expect(kToolCallsOpen);
      while (true) {
        tool_calls.push_back(parse_invoke(r));
        if (r.at(kToolCallsClose)) break;
        r.expect("\n");
      }
      r.expect(kToolCallsClose);
      if (r.rest().substr(0, kEos.size()) != kEos) bad_format("Invalid format: missing EOS token");
      after = r.rest().substr(kEos.size());
    } else {
      after = rest.substr(eos + kEos.size());
    }
    if (!after.empty()) bad_format("Invalid format: text after the EOS token");
    reject_protocol_tokens(reasoning, "reasoning");
    reject_protocol_tokens(content, "content");
    J out = J::object();
    out["role"] = "assistant";
    out["content"] = content;
    out["reasoning_content"] = reasoning;
    out["tool_calls"] = tool_calls;
    return out.dump();
  });
}

Result<std::string> python_json_dumps(std::string_view json_text) {
  return capture_result([&] { return python_dumps(parse_json(json_text, "value")); });
}

}  // namespace dsv4::text
