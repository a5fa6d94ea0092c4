#include "dsv4/model/prefix_store.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "dsv4/core/checksum.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kSuffix = ".dsv4session";

// Entries are named MODEL-HASH-LENGTH.dsv4session: the model's fingerprint, the FNV-1a hash of
// the first LENGTH token ids (16 hex digits each), and LENGTH.
std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string entry_name(uint64_t model, uint64_t tokens_hash, int64_t length) {
  return hex16(model) + "-" + hex16(tokens_hash) + "-" + std::to_string(length) +
         std::string(kSuffix);
}

struct Entry {
  std::string hash;  // the token hash, hex
  int64_t length = 0;
  fs::path path;
};

// The store's entries for a model (names that do not parse are ignored).
std::vector<Entry> entries_for(const std::string& dir, uint64_t model) {
  std::vector<Entry> out;
  std::error_code ec;
  const std::string prefix = hex16(model) + "-";
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() < prefix.size() + 17 + kSuffix.size() || name.rfind(prefix, 0) != 0 ||
        !name.ends_with(kSuffix))
      continue;
    const std::string rest =
        name.substr(prefix.size(), name.size() - prefix.size() - kSuffix.size());
    if (rest.size() < 18 || rest[16] != '-') continue;
    Entry entry{rest.substr(0, 16), 0, e.path()};
    try {
      size_t used = 0;
      entry.length = std::stoll(rest.substr(17), &used);
      if (used != rest.size() - 17 || entry.length < 0) continue;
    } catch (...) {
      continue;
    }
    out.push_back(std::move(entry));
  }
  return out;
}

uint64_t hash_tokens(uint64_t h, std::span<const int32_t> tokens) {
  return fnv1a64(h, tokens.data(), tokens.size() * sizeof(int32_t));
}

}  // namespace

Result<PrefixStore> PrefixStore::open(const std::string& dir) {
  if (dir.empty()) return Status(StatusCode::kInvalidArgument, "PrefixStore: empty directory");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir, ec))
    return Status(StatusCode::kIo, "PrefixStore: cannot use directory " + dir + ": " +
                                       (ec ? ec.message() : "not a directory"));
  return PrefixStore(dir);
}

Status PrefixStore::save(const Session& session, const SaveOptions& options) const {
  const auto& tokens = session.tokens();
  const std::string name = entry_name(session.model().fingerprint(),
                                      hash_tokens(kFnvOffset, tokens), int64_t(tokens.size()));
  return session.save((fs::path(dir_) / name).string(), options);
}

std::vector<int64_t> PrefixStore::saved_lengths(const Model& model) const {
  std::vector<int64_t> lengths;
  for (const Entry& e : entries_for(dir_, model.fingerprint())) lengths.push_back(e.length);
  std::sort(lengths.begin(), lengths.end());
  return lengths;
}

Result<std::unique_ptr<Session>> PrefixStore::load_longest_prefix(
    std::shared_ptr<const Model> model, std::span<const int32_t> tokens,
    const SessionOptions& options) const {
  if (!model) return Status(StatusCode::kInvalidArgument, "PrefixStore: model is null");
  std::vector<Entry> candidates = entries_for(dir_, model->fingerprint());
  std::erase_if(candidates, [&](const Entry& e) { return e.length > int64_t(tokens.size()); });
  // Longest first; the token hash of each length is computed once, incrementally.
  std::sort(candidates.begin(), candidates.end(),
            [](const Entry& a, const Entry& b) { return a.length > b.length; });
  std::vector<int64_t> lengths;
  for (const Entry& e : candidates) lengths.push_back(e.length);
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  std::vector<std::pair<int64_t, std::string>> hashes;
  uint64_t h = kFnvOffset;
  int64_t done = 0;
  for (int64_t n : lengths) {
    h = hash_tokens(h, tokens.subspan(size_t(done), size_t(n - done)));
    done = n;
    hashes.emplace_back(n, hex16(h));
  }
  for (const Entry& e : candidates) {
    const auto it = std::find_if(hashes.begin(), hashes.end(),
                                 [&](const auto& p) { return p.first == e.length; });
    if (it == hashes.end() || it->second != e.hash) continue;
    auto loaded = Session::load(model, e.path.string(), options);
    if (!loaded) continue;  // damaged or foreign: try a shorter prefix
    const auto& held = loaded.value()->tokens();
    if (!std::equal(held.begin(), held.end(), tokens.begin())) continue;
    return std::move(loaded.value());
  }
  return Session::create(std::move(model), options);
}

}  // namespace dsv4
