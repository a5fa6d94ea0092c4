// The V4 tokenizer: a Hugging Face `tokenizer.json` (byte-level BPE with merges, a sequence of
// Split pre-tokenizers, added tokens) encoded and decoded as the reference implementation does.
//
// Added tokens (`<｜User｜>`, `<think>`, …) are matched in the text only when the caller asks
// (EncodeOptions::match_added_tokens): text that comes from users must not be able to inject
// protocol tokens. The chat encoder inserts protocol tokens by id instead.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dsv4/core/status.hpp"

namespace dsv4::text {

struct EncodeOptions {
  // Match added-token contents before BPE, as Hugging Face `encode` does (two passes: the
  // tokens with `normalized: false`, then in the gaps those with `normalized: true`; each
  // leftmost-longest). Off: every byte of the text goes through the pre-tokenizer and BPE.
  bool match_added_tokens = false;
};

struct DecodeOptions {
  bool skip_special_tokens = false;  // drop added tokens flagged `special` (BOS, EOS, …)
};

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory holding one. kIo if missing, kCorruptFile
  // if malformed, kUnsupported for a model or pre-tokenizer type this implementation lacks.
  static Result<std::shared_ptr<const Tokenizer>> load(const std::string& path);
  // The same from the texts of a tokenizer.json and (may be empty) its tokenizer_config.json.
  static Result<std::shared_ptr<const Tokenizer>> parse(std::string_view tokenizer_json,
                                                        std::string_view config_json = {});
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // kInvalidArgument if `text` is not valid UTF-8. Safe to call from several threads at once.
  Result<std::vector<int32_t>> encode(std::string_view text, EncodeOptions options = {}) const;
  // As encode, with added tokens matched only inside the byte ranges `added_token_spans`
  // (sorted, disjoint): the chat encoder marks the protocol text it wrote itself this way.
  Result<std::vector<int32_t>> encode_with_added_tokens_in(
      std::string_view text, std::span<const std::pair<size_t, size_t>> added_token_spans) const;
  // The text of `ids` (invalid UTF-8 from byte tokens becomes U+FFFD, as the reference does).
  // kOutOfRange naming the first id that is not a token.
  Result<std::string> decode(std::span<const int32_t> ids, DecodeOptions options = {}) const;

  // The raw bytes a token stands for (possibly an incomplete UTF-8 sequence); empty for an
  // id without a token.
  std::string_view token_bytes(int32_t id) const noexcept;
  // The token's string as stored in the file (byte-level symbols, e.g. "Ġthe").
  std::string_view token_piece(int32_t id) const noexcept;
  // The id of a stored piece or of an added token's content.
  std::optional<int32_t> piece_to_id(std::string_view piece) const noexcept;
  bool is_added_token(int32_t id) const noexcept;
  bool is_special_token(int32_t id) const noexcept;

  // One more than the largest id (the embedding rows the tokenizer can address).
  int32_t n_vocab() const noexcept;
  int32_t bos_id() const noexcept;  // -1 when the tokenizer names none
  int32_t eos_id() const noexcept;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of ids into text as it comes: bytes of a UTF-8 sequence that a later token
// completes are held back, so a caller never prints half a character.
class StreamDecoder {
 public:
  explicit StreamDecoder(std::shared_ptr<const Tokenizer> tokenizer);
  // The text that `id` completes (possibly empty). kOutOfRange for an unknown id.
  Result<std::string> push(int32_t id);
  // Whatever is held back, with U+FFFD for an incomplete sequence; resets the decoder.
  std::string flush();

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::string pending_;
};

}  // namespace dsv4::text
