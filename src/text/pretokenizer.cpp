#include "pretokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "dsv4/core/status.hpp"

namespace dsv4::text {

namespace {

// Unicode White_Space: U+0009–U+000D, U+0085 and the Z categories (U+0020, U+00A0, U+1680,
// U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
constexpr std::string_view kWhiteSpaceItems = "\\x{9}-\\x{d}\\x{85}\\p{Z}";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

std::string oniguruma_to_pcre2(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      ++i;
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpaceItems) : "[" + std::string(kWhiteSpaceItems) + "]";
      } else if (e == 'S') {
        if (in_class) fail(StatusCode::kUnsupported, "regex: \\S inside a character class");
        out += "[^" + std::string(kWhiteSpaceItems) + "]";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (in_class && c == '[') fail(StatusCode::kUnsupported, "regex: nested character classes");
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

struct SplitStage::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() {
    if (code) pcre2_code_free(code);
  }
};

SplitStage::SplitStage(const std::string& pattern) : compiled_(std::make_unique<Compiled>()) {
  const std::string translated = oniguruma_to_pcre2(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  compiled_->code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                    PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (!compiled_->code)
    fail(StatusCode::kCorruptFile, "pre-tokenizer regex does not compile at offset " +
                                       std::to_string(offset) + ": " + pcre2_message(error));
  // Without JIT (a build or CPU without it) the interpreter gives the same matches, slower.
  (void)pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE);
}

SplitStage::~SplitStage() = default;
SplitStage::SplitStage(SplitStage&&) noexcept = default;
SplitStage& SplitStage::operator=(SplitStage&&) noexcept = default;

namespace {

// One match-data block per thread (a tokenizer is shared between threads): 1 pair is enough,
// the patterns have no captures the splitter reads.
pcre2_match_data* thread_match_data() {
  struct Holder {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(data); }
  };
  thread_local Holder holder;
  if (!holder.data) throw std::bad_alloc();
  return holder.data;
}

}  // namespace

void SplitStage::split(std::string_view piece, std::vector<std::string_view>& out) const {
  pcre2_match_data* match = thread_match_data();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t start = 0, gap = 0;
  while (start < piece.size()) {
    // The text was checked for valid UTF-8 once, before the first stage.
    const int rc = pcre2_match(compiled_->code, subject, piece.size(), start, PCRE2_NO_UTF_CHECK,
                               match, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail(StatusCode::kInternal, "pre-tokenizer regex: " + pcre2_message(rc));
    const PCRE2_SIZE* v = pcre2_get_ovector_pointer(match);
    const size_t begin = v[0], end = v[1];
    if (begin > gap) out.push_back(piece.substr(gap, begin - gap));
    if (end > begin) {
      out.push_back(piece.substr(begin, end - begin));
      start = gap = end;
    } else {
      // An empty match splits nothing; step over one character (UTF-8 aware).
      start = begin + 1;
      while (start < piece.size() && (uint8_t(piece[start]) & 0xC0) == 0x80) ++start;
    }
  }
  if (gap < piece.size()) out.push_back(piece.substr(gap));
}

void PreTokenizer::run(std::string_view text, std::vector<std::string_view>& pieces,
                       std::vector<std::string_view>& scratch) const {
  pieces.clear();
  if (text.empty()) return;
  pieces.push_back(text);
  for (const SplitStage& stage : stages_) {
    scratch.clear();
    for (std::string_view p : pieces) stage.split(p, scratch);
    pieces.swap(scratch);
  }
}

}  // namespace dsv4::text
