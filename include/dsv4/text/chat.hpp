// The DeepSeek-V4 prompt format (the semantics of DeepSeek's `encoding_dsv4.py`) and the parser
// of the model's output. Messages go in and parsed messages come out as JSON text
// (OpenAI-style: role, content, reasoning_content, tools, tool_calls, tool_call_id, plus V4's
// task, wo_eos, response_format and the developer / latest_reminder roles).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/text/tokenizer.hpp"

namespace dsv4::text {

enum class ChatVariant {
  kV4,      // the initial release: effort "max" gets the maximum-effort paragraph
  kV4_0731  // the 0731 update: "high" gets that paragraph, "max" a stronger one
};

struct ChatOptions {
  bool thinking = false;         // thinking_mode "thinking" (else "chat")
  bool drop_thinking = true;     // earlier turns lose their reasoning (unless tools are present)
  bool add_bos = true;           // the BOS when there is no context
  std::string reasoning_effort;  // "", "low", "high" or "max"
  ChatVariant variant = ChatVariant::kV4;
  // Messages already in the session's cache (a JSON array, or empty): they shape the prompt
  // (turn indices, which reasoning is kept) but are not rendered again.
  std::string context_json;
};

// "v4" (or "") and "v4-0731"; kInvalidArgument for any other name.
Result<ChatVariant> chat_variant_from_name(std::string_view name);

// Reads `variant` and the encoder's keyword arguments (thinking_mode, drop_thinking,
// add_default_bos_token, reasoning_effort, context) from JSON objects as in chat-cases.jsonl.
Result<ChatOptions> chat_options_from_json(std::string_view args_json, std::string_view variant);

struct RenderedPrompt {
  std::string text;
  // Byte ranges of `text` that the encoder wrote itself (role and protocol tokens, templates):
  // only there are added tokens matched when tokenizing, so message content can never turn
  // into protocol tokens.
  std::vector<std::pair<size_t, size_t>> protocol_spans;
};

// kInvalidArgument for malformed messages (not an array, unknown role or task, wrong types).
Result<RenderedPrompt> render_chat(std::string_view messages_json, const ChatOptions& options);
// The prompt's ids: protocol spans with added-token matching, everything else without.
Result<std::vector<int32_t>> tokenize_prompt(const Tokenizer& tokenizer,
                                             const RenderedPrompt& prompt);

// Parses one generated assistant turn (the text up to and including the EOS) into a JSON
// object {role, content, reasoning_content, tool_calls}. kInvalidArgument with the reason when
// the text does not follow the format (missing </think> or EOS, malformed DSML, protocol
// tokens inside the content); never crashes on truncated input.
Result<std::string> parse_completion(std::string_view text, bool thinking);

// Python's json.dumps(x, ensure_ascii=False) of a JSON text: ", " and ": " separators, keys in
// their order, floats as Python's repr. The prompt format embeds JSON this way.
Result<std::string> python_json_dumps(std::string_view json_text);

}  // namespace dsv4::text
