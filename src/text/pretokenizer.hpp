// The pre-tokenizer of a tokenizer.json: a sequence of `Split` stages (regex, behaviour
// `Isolated`), each applied to every piece the previous stage produced, with PCRE2 (JIT) as the
// Unicode regex engine. Pieces are views into the text: isolated splitting never changes bytes.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::text {

class SplitStage {
 public:
  // `pattern` in the Oniguruma flavour tokenizer.json files use; throws dsv4::Error
  // (kUnsupported) if it uses a construct without a PCRE2 equivalent.
  explicit SplitStage(const std::string& pattern);
  ~SplitStage();
  SplitStage(SplitStage&&) noexcept;
  SplitStage& operator=(SplitStage&&) noexcept;

  // Appends to `out` the pieces of `piece`: every match and every non-empty gap, in order.
  void split(std::string_view piece, std::vector<std::string_view>& out) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

// Oniguruma's \s is Unicode White_Space (U+0085 included); PCRE2's is not quite, so the pattern
// is rewritten with an explicit class. Exposed for the tests.
std::string oniguruma_to_pcre2(const std::string& pattern);

class PreTokenizer {
 public:
  void add_split(const std::string& pattern) { stages_.emplace_back(pattern); }
  // Replaces `pieces` with the pieces of `text`; `scratch` is reused between calls.
  void run(std::string_view text, std::vector<std::string_view>& pieces,
           std::vector<std::string_view>& scratch) const;

 private:
  std::vector<SplitStage> stages_;
};

}  // namespace dsv4::text
