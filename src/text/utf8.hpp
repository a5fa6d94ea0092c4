// UTF-8 scanning shared by the tokenizer, the stream decoder and the chat parser. Invalid input
// is replaced by "maximal subparts" (Unicode's recommended practice, as Rust's from_utf8_lossy
// and so the reference tokenizer's decoder do).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv4::text::utf8 {

struct Step {
  size_t length;   // bytes consumed: the whole sequence, or its longest valid-so-far prefix
  bool valid;      // a complete, well-formed sequence
  bool truncated;  // valid so far but the input ended before the sequence did
};

// The sequence starting at s[i] (i < s.size()).
inline Step step(std::string_view s, size_t i) noexcept {
  const auto b = uint8_t(s[i]);
  if (b < 0x80) return {1, true, false};
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    need = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {1, false, false};
  }
  for (size_t k = 1; k < need; ++k) {
    if (i + k >= s.size()) return {k, false, true};
    const auto c = uint8_t(s[i + k]);
    const uint8_t min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xBF;
    if (c < min || c > max) return {k, false, false};
  }
  return {need, true, false};
}

// Byte offset of the first ill-formed sequence, or npos.
inline size_t first_invalid(std::string_view s) noexcept {
  for (size_t i = 0; i < s.size();) {
    const Step st = step(s, i);
    if (!st.valid) return i;
    i += st.length;
  }
  return std::string_view::npos;
}

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Appends `s` to `out`, each maximal ill-formed subpart replaced by U+FFFD. With `hold_tail`,
// a sequence cut off by the end of `s` is not replaced: its length is returned so the caller can
// keep those bytes for the next call.
inline size_t append_lossy(std::string& out, std::string_view s, bool hold_tail) {
  for (size_t i = 0; i < s.size();) {
    const Step st = step(s, i);
    if (st.valid) {
      out.append(s.substr(i, st.length));
    } else if (st.truncated && hold_tail) {
      return s.size() - i;
    } else {
      out.append(kReplacement);
    }
    i += st.length;
  }
  return 0;
}

}  // namespace dsv4::text::utf8
