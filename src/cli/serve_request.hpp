// dsv4 serve's requests: a JSON body checked field by field (types, ranges, the messages
// through the V4 chat encoding, the prompt tokenized) into a request ready to run, or a
// kInvalidArgument naming the field. Kept apart from the HTTP server so that the fuzz target
// (tests/fuzz) drives exactly what the server runs on a body.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "dsv4/sampling/sampler.hpp"
#include "dsv4/text/chat.hpp"
#include "dsv4/text/tokenizer.hpp"

namespace dsv4::cli {

inline constexpr int64_t kMaxTokensLimit = 4096;
inline constexpr int64_t kDefaultMaxTokens = 256;

// A checked request, ready to run.
struct GenerationRequest {
  text::ChatOptions chat;
  int64_t max_tokens = kDefaultMaxTokens;
  bool stream = false;
  std::unique_ptr<sampling::Sampler> sampler;
  std::vector<int32_t> prompt;
};

// /v1/chat/completions: messages (tools on the system message), thinking, reasoning_effort and
// the sampling fields. Throws dsv4::Error (kInvalidArgument, ...) on a bad body.
GenerationRequest prepare_chat(const nlohmann::json& body,
                               const std::shared_ptr<const text::Tokenizer>& tokenizer);
// /v1/completions: the prompt text as it is (after the BOS), no chat format.
GenerationRequest prepare_completion(const nlohmann::json& body,
                                     const std::shared_ptr<const text::Tokenizer>& tokenizer);

}  // namespace dsv4::cli
