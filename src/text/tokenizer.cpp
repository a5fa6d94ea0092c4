#include "dsv4/text/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "pretokenizer.hpp"
#include "utf8.hpp"

namespace dsv4::text {

namespace {

using json = nlohmann::json;

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes
// for code points 256.. in byte order. Returns byte -> code point.
std::array<uint32_t, 256> byte_level_alphabet() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    map[b] = printable ? b : next++;
  }
  return map;
}

void append_code_point(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Leftmost-longest matcher over the added tokens' contents (a byte trie).
class AddedTokenTrie {
 public:
  void insert(std::string_view content, int32_t id) {
    int32_t node = 0;
    for (char c : content) {
      const int32_t child = find_child(node, uint8_t(c));
      if (child >= 0) {
        node = child;
      } else {
        nodes_.push_back({});
        nodes_[size_t(node)].children.emplace_back(uint8_t(c), int32_t(nodes_.size() - 1));
        node = int32_t(nodes_.size() - 1);
      }
    }
    nodes_[size_t(node)].id = id;
  }
  bool empty() const { return nodes_.size() == 1; }
  // The longest token starting at text[at]: {id, length}, or {-1, 0}.
  std::pair<int32_t, size_t> longest_at(std::string_view text, size_t at) const {
    int32_t node = 0, best = -1;
    size_t best_len = 0;
    for (size_t i = at; i < text.size(); ++i) {
      node = find_child(node, uint8_t(text[i]));
      if (node < 0) break;
      if (nodes_[size_t(node)].id >= 0) best = nodes_[size_t(node)].id, best_len = i + 1 - at;
    }
    return {best, best_len};
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t id = -1;
  };
  int32_t find_child(int32_t node, uint8_t byte) const {
    for (const auto& [b, child] : nodes_[size_t(node)].children)
      if (b == byte) return child;
    return -1;
  }
  std::vector<Node> nodes_ = std::vector<Node>(1);
};

// A stretch of text (where added tokens may be matched or not), or an added token matched.
struct Segment {
  std::string_view text;
  int32_t token = -1;
  bool matchable = true;
};

// Splits every text segment of `in` at the matches of `trie` (leftmost-longest).
void match_added(const AddedTokenTrie& trie, const std::vector<Segment>& in,
                 std::vector<Segment>& out) {
  out.clear();
  for (const Segment& s : in) {
    if (s.token >= 0 || !s.matchable || trie.empty()) {
      out.push_back(s);
      continue;
    }
    size_t gap = 0;
    for (size_t i = 0; i < s.text.size();) {
      const auto [id, len] = trie.longest_at(s.text, i);
      if (id < 0) {
        ++i;
        continue;
      }
      if (i > gap) out.push_back({s.text.substr(gap, i - gap)});
      out.push_back({{}, id, false});
      i += len;
      gap = i;
    }
    if (gap < s.text.size()) out.push_back({s.text.substr(gap)});
  }
}

constexpr uint8_t kAdded = 1, kSpecial = 2;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(StatusCode::kIo, "cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// tokenizer_config.json names BOS/EOS as a string or as {"content": ...}.
std::string config_token(const json& config, const char* key) {
  if (!config.contains(key)) return {};
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

std::string regex_quote(const std::string& literal) {
  std::string out = "\\Q";
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal.compare(i, 2, "\\E") == 0) {
      out += "\\E\\\\E\\Q";
      ++i;
    } else {
      out += literal[i];
    }
  }
  return out + "\\E";
}

constexpr const char* kGpt2Split =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

}  // namespace

struct Tokenizer::Impl {
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  std::vector<std::string> pieces;                     // id -> the string stored in the file
  std::vector<std::string> bytes;                      // id -> the bytes it decodes to
  std::vector<uint8_t> flags;                          // kAdded | kSpecial
  std::unordered_map<std::string, int32_t> piece_ids;  // vocab pieces and added contents
  std::unordered_map<uint64_t, Merge> merges;          // (left id, right id) -> merge
  std::array<int32_t, 256> byte_token{};
  AddedTokenTrie added_raw, added_normalized;
  PreTokenizer pre;
  bool ignore_merges = false;
  int32_t bos = -1, eos = -1;

  void parse(const json& doc, const json& config);
  void parse_pre_tokenizer(const json& p);
  void set_token(int32_t id, const std::string& piece, uint8_t flag);
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_long(std::vector<int32_t>& ids) const;
  const Merge* merge_of(int32_t a, int32_t b) const {
    const auto it = merges.find(uint64_t(uint32_t(a)) << 32 | uint32_t(b));
    return it == merges.end() ? nullptr : &it->second;
  }
};

void Tokenizer::Impl::set_token(int32_t id, const std::string& piece, uint8_t flag) {
  if (id < 0 || id > (1 << 24)) fail(StatusCode::kCorruptFile, "tokenizer: token id out of range");
  if (size_t(id) >= pieces.size()) {
    pieces.resize(size_t(id) + 1);
    bytes.resize(size_t(id) + 1);
    flags.resize(size_t(id) + 1);
  }
  pieces[size_t(id)] = piece;
  flags[size_t(id)] |= flag;
  // As the reference ByteLevel decoder: a token whose every character is in the byte alphabet
  // decodes to those bytes; any other token (added tokens such as "<｜User｜>") to its UTF-8.
  static const auto alphabet = byte_level_alphabet();
  static const auto inverse = [] {
    std::unordered_map<uint32_t, uint8_t> m;
    for (uint32_t b = 0; b < 256; ++b) m[alphabet[b]] = uint8_t(b);
    return m;
  }();
  std::string decoded;
  bool all_mapped = true;
  for (size_t i = 0; i < piece.size() && all_mapped;) {
    const utf8::Step st = utf8::step(piece, i);
    if (!st.valid) fail(StatusCode::kCorruptFile, "tokenizer: a token is not valid UTF-8");
    uint32_t cp = uint8_t(piece[i]) & (st.length == 1   ? 0x7F
                                       : st.length == 2 ? 0x1F
                                       : st.length == 3 ? 0x0F
                                                        : 0x07);
    for (size_t k = 1; k < st.length; ++k) cp = cp << 6 | (uint8_t(piece[i + k]) & 0x3F);
    const auto it = inverse.find(cp);
    if (it == inverse.end())
      all_mapped = false;
    else
      decoded += char(it->second);
    i += st.length;
  }
  bytes[size_t(id)] = all_mapped ? decoded : piece;
}

void Tokenizer::Impl::parse_pre_tokenizer(const json& p) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const json& q : p.at("pretokenizers")) parse_pre_tokenizer(q);
  } else if (type == "Split") {
    if (p.value("behavior", "") != "Isolated" || p.value("invert", false))
      fail(StatusCode::kUnsupported, "tokenizer: only Split with behavior Isolated is supported");
    const json& pattern = p.at("pattern");
    if (pattern.contains("Regex")) {
      pre.add_split(pattern["Regex"].get<std::string>());
    } else {
      pre.add_split(regex_quote(pattern.at("String").get<std::string>()));
    }
  } else if (type == "ByteLevel") {
    if (p.value("add_prefix_space", false))
      fail(StatusCode::kUnsupported, "tokenizer: ByteLevel add_prefix_space is not supported");
    if (p.value("use_regex", true)) pre.add_split(kGpt2Split);
  } else {
    fail(StatusCode::kUnsupported, "tokenizer: pre-tokenizer type '" + type + "'");
  }
}

void Tokenizer::Impl::parse(const json& doc, const json& config) {
  const json& model = doc.at("model");
  if (model.value("type", "BPE") != "BPE")
    fail(StatusCode::kUnsupported, "tokenizer: model type '" + model.value("type", "") + "'");
  if (model.value("byte_fallback", false) ||
      !model.value("continuing_subword_prefix", json()).is_null() ||
      !model.value("end_of_word_suffix", json()).is_null())
    fail(StatusCode::kUnsupported,
         "tokenizer: BPE options other than byte-level are not supported");
  ignore_merges = model.value("ignore_merges", false);
  const json& normalizer = doc.value("normalizer", json());
  if (!normalizer.is_null() && !(normalizer.value("type", "") == "Sequence" &&
                                 normalizer.value("normalizers", json::array()).empty()))
    fail(StatusCode::kUnsupported, "tokenizer: normalizers are not supported");
  const json& decoder = doc.value("decoder", json());
  if (!decoder.is_null() && decoder.value("type", "") != "ByteLevel")
    fail(StatusCode::kUnsupported, "tokenizer: only the ByteLevel decoder is supported");

  for (const auto& [piece, id] : model.at("vocab").items()) {
    set_token(id.get<int32_t>(), piece, 0);
    piece_ids[piece] = id.get<int32_t>();
  }
  const auto alphabet = byte_level_alphabet();
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    append_code_point(symbol, alphabet[size_t(b)]);
    const auto it = piece_ids.find(symbol);
    if (it == piece_ids.end())
      fail(StatusCode::kCorruptFile, "tokenizer: the vocabulary lacks byte " + std::to_string(b));
    byte_token[size_t(b)] = it->second;
  }
  const json& merge_list = model.at("merges");
  merges.reserve(merge_list.size());
  int32_t rank = 0;
  for (const json& m : merge_list) {
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos)
        fail(StatusCode::kCorruptFile, "tokenizer: merge '" + s + "'");
      left = s.substr(0, space), right = s.substr(space + 1);
    } else {
      left = m.at(0).get<std::string>(), right = m.at(1).get<std::string>();
    }
    const auto l = piece_ids.find(left), r = piece_ids.find(right),
               lr = piece_ids.find(left + right);
    if (l == piece_ids.end() || r == piece_ids.end() || lr == piece_ids.end())
      fail(StatusCode::kCorruptFile,
           "tokenizer: merge of unknown tokens '" + left + " " + right + "'");
    merges.emplace(uint64_t(uint32_t(l->second)) << 32 | uint32_t(r->second),
                   Merge{rank++, lr->second});
  }
  for (const json& t : doc.value("added_tokens", json::array())) {
    const int32_t id = t.at("id").get<int32_t>();
    const std::string content = t.at("content").get<std::string>();
    if (content.empty()) fail(StatusCode::kCorruptFile, "tokenizer: an added token is empty");
    set_token(id, content, uint8_t(kAdded | (t.value("special", false) ? kSpecial : 0)));
    piece_ids[content] = id;
    (t.value("normalized", false) ? added_normalized : added_raw).insert(content, id);
  }
  parse_pre_tokenizer(doc.value("pre_tokenizer", json()));
  auto id_of = [&](const std::string& content) {
    const auto it = piece_ids.find(content);
    return content.empty() || it == piece_ids.end() ? -1 : it->second;
  };
  bos = id_of(config_token(config, "bos_token"));
  eos = id_of(config_token(config, "eos_token"));
}

// Byte-pair merges on one pre-tokenized piece: repeatedly merge the adjacent pair of lowest
// rank (leftmost on ties) until none applies.
void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    const auto it = piece_ids.find(std::string(word));  // rare option; not the V4 path
    if (it != piece_ids.end()) {
      out.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> ids;
  ids.clear();
  for (char c : word) ids.push_back(byte_token[uint8_t(c)]);
  if (ids.size() > 48) {
    bpe_long(ids);
  } else {
    // Short pieces (nearly all): a scan per merge is cheaper than a heap.
    while (ids.size() > 1) {
      int32_t best_rank = INT32_MAX, best_id = -1;
      size_t best_at = 0;
      for (size_t i = 0; i + 1 < ids.size(); ++i) {
        const Merge* m = merge_of(ids[i], ids[i + 1]);
        if (m && m->rank < best_rank) best_rank = m->rank, best_id = m->id, best_at = i;
      }
      if (best_id < 0) break;
      ids[best_at] = best_id;
      ids.erase(ids.begin() + std::ptrdiff_t(best_at) + 1);
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
}

// The same merges for long pieces: a doubly linked list of symbols and a min-heap of candidate
// pairs (rank, position), stale entries skipped when popped. O(n log n).
void Tokenizer::Impl::bpe_long(std::vector<int32_t>& ids) const {
  const auto n = int32_t(ids.size());
  std::vector<int32_t> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) prev[size_t(i)] = i - 1, next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  struct Candidate {
    int32_t rank, at, left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : at > o.at; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int32_t at) {
    const int32_t nx = next[size_t(at)];
    if (nx < 0) return;
    if (const Merge* m = merge_of(ids[size_t(at)], ids[size_t(nx)]))
      heap.push({m->rank, at, ids[size_t(at)], ids[size_t(nx)]});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int32_t nx = next[size_t(c.at)];
    if (ids[size_t(c.at)] != c.left || nx < 0 || ids[size_t(nx)] != c.right) continue;  // stale
    ids[size_t(c.at)] = merge_of(c.left, c.right)->id;
    ids[size_t(nx)] = -1;
    next[size_t(c.at)] = next[size_t(nx)];
    if (next[size_t(nx)] >= 0) prev[size_t(next[size_t(nx)])] = c.at;
    if (prev[size_t(c.at)] >= 0) push(prev[size_t(c.at)]);
    push(c.at);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0 && i < n; i = next[size_t(i)]) ids[w++] = ids[size_t(i)];
  ids.resize(w);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Result<std::shared_ptr<const Tokenizer>> Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path file = path;
  std::error_code ec;
  if (fs::is_directory(file, ec)) file /= "tokenizer.json";
  if (!fs::exists(file, ec)) return Status(StatusCode::kIo, "no tokenizer at " + file.string());
  std::string text, config_text;
  Status read = capture_status([&] {
    text = read_file(file);
    const fs::path config_file = file.parent_path() / "tokenizer_config.json";
    if (fs::exists(config_file, ec)) config_text = read_file(config_file);
  });
  if (!read) return read;
  auto parsed = parse(text, config_text);
  if (!parsed)
    return Status(parsed.status().code(), file.string() + ": " + parsed.status().message());
  return parsed;
}

Result<std::shared_ptr<const Tokenizer>> Tokenizer::parse(std::string_view tokenizer_json,
                                                          std::string_view config_json) {
  return capture_result([&]() -> std::shared_ptr<const Tokenizer> {
    json doc, config = json::object();
    auto impl = std::make_unique<Impl>();
    try {
      doc = json::parse(tokenizer_json);
      if (!config_json.empty()) config = json::parse(config_json);
      impl->parse(doc, config);
    } catch (const json::exception& e) {
      fail(StatusCode::kCorruptFile, std::string("tokenizer: ") + e.what());
    }
    return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
  });
}

namespace {

void check_utf8(std::string_view text) {
  if (const size_t bad = utf8::first_invalid(text); bad != std::string_view::npos)
    fail(StatusCode::kInvalidArgument,
         "text is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
}

}  // namespace

// Matches added tokens in the matchable segments, then pre-tokenizes and BPEs the text between
// the matches: neighbouring text segments are joined first, so where matching was allowed or not
// never changes how the text around it is split.
std::vector<int32_t> encode_segments(const Tokenizer::Impl& impl, std::vector<Segment>& segments) {
  thread_local std::vector<Segment> matched;
  match_added(impl.added_raw, segments, matched);
  match_added(impl.added_normalized, matched, segments);
  std::vector<int32_t> ids;
  thread_local std::vector<std::string_view> pieces, scratch;
  for (size_t i = 0; i < segments.size();) {
    if (segments[i].token >= 0) {
      ids.push_back(segments[i++].token);
      continue;
    }
    std::string_view run = segments[i++].text;
    while (i < segments.size() && segments[i].token < 0) {
      run = std::string_view(run.data(), run.size() + segments[i].text.size());
      ++i;
    }
    impl.pre.run(run, pieces, scratch);
    for (std::string_view p : pieces) impl.bpe(p, ids);
  }
  return ids;
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, EncodeOptions options) const {
  return capture_result([&] {
    check_utf8(text);
    thread_local std::vector<Segment> segments;
    segments.assign(1, Segment{text, -1, options.match_added_tokens});
    return encode_segments(*impl_, segments);
  });
}

Result<std::vector<int32_t>> Tokenizer::encode_with_added_tokens_in(
    std::string_view text, std::span<const std::pair<size_t, size_t>> added_token_spans) const {
  return capture_result([&] {
    check_utf8(text);
    thread_local std::vector<Segment> segments;
    segments.clear();
    size_t at = 0;
    for (const auto& [begin, end] : added_token_spans) {
      if (begin < at || end < begin || end > text.size())
        fail(StatusCode::kInvalidArgument,
             "added-token spans must be sorted, disjoint, in the text");
      if (begin > at) segments.push_back({text.substr(at, begin - at), -1, false});
      if (end > begin) segments.push_back({text.substr(begin, end - begin), -1, true});
      at = end;
    }
    if (at < text.size()) segments.push_back({text.substr(at), -1, false});
    return encode_segments(*impl_, segments);
  });
}

Result<std::string> Tokenizer::decode(std::span<const int32_t> ids, DecodeOptions options) const {
  return capture_result([&] {
    std::string raw;
    for (int32_t id : ids) {
      if (id < 0 || size_t(id) >= impl_->pieces.size() || impl_->pieces[size_t(id)].empty())
        fail(StatusCode::kOutOfRange,
             "token id " + std::to_string(id) + " is not in the vocabulary");
      if (options.skip_special_tokens && (impl_->flags[size_t(id)] & kSpecial)) continue;
      raw += impl_->bytes[size_t(id)];
    }
    std::string out;
    out.reserve(raw.size());
    utf8::append_lossy(out, raw, false);
    return out;
  });
}

std::string_view Tokenizer::token_bytes(int32_t id) const noexcept {
  return id >= 0 && size_t(id) < impl_->bytes.size() ? std::string_view(impl_->bytes[size_t(id)])
                                                     : std::string_view();
}
std::string_view Tokenizer::token_piece(int32_t id) const noexcept {
  return id >= 0 && size_t(id) < impl_->pieces.size() ? std::string_view(impl_->pieces[size_t(id)])
                                                      : std::string_view();
}
std::optional<int32_t> Tokenizer::piece_to_id(std::string_view piece) const noexcept {
  const auto it = impl_->piece_ids.find(std::string(piece));
  if (it == impl_->piece_ids.end()) return std::nullopt;
  return it->second;
}
bool Tokenizer::is_added_token(int32_t id) const noexcept {
  return id >= 0 && size_t(id) < impl_->flags.size() && (impl_->flags[size_t(id)] & kAdded);
}
bool Tokenizer::is_special_token(int32_t id) const noexcept {
  return id >= 0 && size_t(id) < impl_->flags.size() && (impl_->flags[size_t(id)] & kSpecial);
}
int32_t Tokenizer::n_vocab() const noexcept { return int32_t(impl_->pieces.size()); }
int32_t Tokenizer::bos_id() const noexcept { return impl_->bos; }
int32_t Tokenizer::eos_id() const noexcept { return impl_->eos; }

StreamDecoder::StreamDecoder(std::shared_ptr<const Tokenizer> tokenizer)
    : tokenizer_(std::move(tokenizer)) {}

Result<std::string> StreamDecoder::push(int32_t id) {
  const std::string_view b = tokenizer_->token_bytes(id);
  if (b.empty())
    return Status(StatusCode::kOutOfRange,
                  "token id " + std::to_string(id) + " is not in the vocabulary");
  pending_ += b;
  std::string out;
  const size_t held = utf8::append_lossy(out, pending_, true);
  pending_.erase(0, pending_.size() - held);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8::append_lossy(out, pending_, false);
  pending_.clear();
  return out;
}

}  // namespace dsv4::text
