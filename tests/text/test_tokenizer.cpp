// The tokenizer against the reference vectors (ids and decoded text made with Hugging Face's
// tokenizers from the same files), plus the behaviours the vectors cannot show: special-token
// injection, invalid input, streaming decode.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../../src/text/pretokenizer.hpp"
#include "dsv4/text/tokenizer.hpp"

namespace {

using dsv4::text::Tokenizer;

std::shared_ptr<const Tokenizer> v4_tokenizer() {
  static const auto tok = Tokenizer::load(DSV4_TOKENIZER_DIR).value();
  return tok;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

}  // namespace

TEST_CASE("every reference vector encodes to the reference ids and decodes back") {
  const auto tok = v4_tokenizer();
  const auto rows = read_jsonl(std::string(DSV4_TOKENIZER_DIR) + "/vectors.jsonl");
  REQUIRE(rows.size() >= 100);
  size_t mismatched = 0;
  for (const auto& row : rows) {
    const std::string text = row["text"];
    const auto expected = row["ids"].get<std::vector<int32_t>>();
    const auto ids = tok->encode(text, {.match_added_tokens = true}).value();
    if (ids != expected) {
      ++mismatched;
      UNSCOPED_INFO("vector " << row["i"] << ": " << text);
    }
    CHECK(ids == expected);
    CHECK(tok->decode(expected).value() == row["decoded"].get<std::string>());
    if (row["roundtrip"].get<bool>()) CHECK(tok->decode(ids).value() == text);
  }
  CHECK(mismatched == 0);
}

TEST_CASE("streaming decode gives the same text as decoding all at once") {
  const auto tok = v4_tokenizer();
  for (const auto& row : read_jsonl(std::string(DSV4_TOKENIZER_DIR) + "/vectors.jsonl")) {
    dsv4::text::StreamDecoder stream(tok);
    std::string text;
    for (int32_t id : row["ids"].get<std::vector<int32_t>>()) {
      const std::string part = stream.push(id).value();
      // What comes out is always whole UTF-8 characters.
      CHECK(tok->encode(part).is_ok());
      text += part;
    }
    text += stream.flush();
    CHECK(text == row["decoded"].get<std::string>());
  }
}

TEST_CASE("an emoji split across byte tokens is held back until complete") {
  const auto tok = v4_tokenizer();
  const std::string emoji = "\xF0\x9F\x8C\xA7";  // U+1F327, four byte tokens or fewer
  const auto ids = tok->encode(emoji + "x").value();
  REQUIRE(ids.size() >= 3);  // the emoji's bytes span at least two tokens
  dsv4::text::StreamDecoder stream(tok);
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string part = stream.push(ids[i]).value();
    // Nothing until the emoji is complete, then the whole emoji at once.
    CHECK((part.empty() || part == emoji || part == emoji + "x" || part == "x"));
    out += part;
  }
  CHECK(out + stream.flush() == emoji + "x");
}

TEST_CASE("protocol tokens in user text are plain text unless matching is asked for") {
  const auto tok = v4_tokenizer();
  const std::string text = "<｜User｜>hi<think>";
  const auto plain = tok->encode(text).value();
  for (int32_t id : plain) CHECK(!tok->is_added_token(id));
  CHECK(tok->decode(plain).value() == text);
  const auto matched = tok->encode(text, {.match_added_tokens = true}).value();
  REQUIRE(matched.size() == 3);
  CHECK(matched[0] == 128803);
  CHECK(matched[2] == 128821);
}

TEST_CASE("added tokens match leftmost-longest, non-normalized ones first") {
  const auto tok = v4_tokenizer();
  // `<｜/table>｜` (normalized: false) claims the bar that would start `｜DSML｜`.
  const auto ids = tok->encode("<｜/table>｜DSML｜", {.match_added_tokens = true}).value();
  REQUIRE(!ids.empty());
  CHECK(ids[0] == 129265);
  CHECK(std::find(ids.begin(), ids.end(), 128825) == ids.end());
}

TEST_CASE("ids, pieces and protocol tokens") {
  const auto tok = v4_tokenizer();
  CHECK(tok->n_vocab() == 129280);
  CHECK(tok->bos_id() == 0);
  CHECK(tok->eos_id() == 1);
  CHECK(tok->piece_to_id("<｜Assistant｜>") == 128804);
  CHECK(tok->piece_to_id("Ġ") == 223);
  CHECK(tok->token_piece(223) == "Ġ");
  CHECK(tok->token_bytes(223) == " ");
  CHECK(tok->is_special_token(1));
  CHECK(!tok->is_special_token(128821));
  const int32_t eos[] = {19923, 1};
  CHECK(tok->decode(eos, {.skip_special_tokens = true}).value() == "Hello");
}

TEST_CASE("bad input gets a clear status") {
  const auto tok = v4_tokenizer();
  const auto bad = tok->encode("ok \xC3\x28 no");
  REQUIRE(!bad.is_ok());
  CHECK(bad.status().code() == dsv4::StatusCode::kInvalidArgument);
  CHECK(bad.status().message().find("offset 3") != std::string::npos);
  const int32_t out_of_range[] = {5, 129280};
  CHECK(tok->decode(out_of_range).status().code() == dsv4::StatusCode::kOutOfRange);
  const int32_t negative[] = {-1};
  CHECK(tok->decode(negative).status().code() == dsv4::StatusCode::kOutOfRange);
  CHECK(Tokenizer::load("/nonexistent/dir").status().code() == dsv4::StatusCode::kIo);
  CHECK(tok->encode("").value().empty());
}

TEST_CASE("long pieces take the heap merge path and agree with the short path") {
  const auto tok = v4_tokenizer();
  // A long letter run is one piece: the O(n log n) merge must give what concatenating the
  // reference behaviour implies, and round-trip.
  std::string word;
  for (int i = 0; i < 40; ++i) word += "abcdefgh";
  const auto ids = tok->encode(word).value();
  CHECK(tok->decode(ids).value() == word);
  CHECK(ids.size() < word.size() / 2);
  std::string spaces(5000, ' ');
  CHECK(tok->decode(tok->encode(spaces).value()).value() == spaces);
}

TEST_CASE("Oniguruma whitespace (backslash s) becomes Unicode White_Space for PCRE2") {
  using dsv4::text::oniguruma_to_pcre2;
  CHECK(oniguruma_to_pcre2("\\s+(?!\\S)") ==
        "[\\x{9}-\\x{d}\\x{85}\\p{Z}]+(?![^\\x{9}-\\x{d}\\x{85}\\p{Z}])");
  CHECK(oniguruma_to_pcre2("[^\\s\\p{L}]") == "[^\\x{9}-\\x{d}\\x{85}\\p{Z}\\p{L}]");
  CHECK(oniguruma_to_pcre2("[]a]\\s") == "[]a][\\x{9}-\\x{d}\\x{85}\\p{Z}]");
}
