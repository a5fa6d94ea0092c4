// A prefix store: saved sessions in a directory, keyed by a hash of the model and of their token
// ids, so that a new session can start from the longest saved prefix of its tokens (what a chat
// server needs across turns: the next turn's prompt begins with the previous conversation).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dsv4/core/status.hpp"
#include "dsv4/model/session.hpp"

namespace dsv4 {

class PrefixStore {
 public:
  // Opens (creating it if needed) the store's directory.
  static Result<PrefixStore> open(const std::string& dir);

  // Saves `session` under its model and token ids (an entry for the same ids is replaced;
  // Session::save's atomicity applies).
  Status save(const Session& session, const SaveOptions& options = {}) const;

  // A session restored from the longest saved prefix of `tokens` for `model` (its position says
  // how many tokens it already holds), or a fresh session when none matches. Entries that fail to
  // load (damaged, written by another build) are skipped, never fatal; the tokens a restored
  // session holds are compared with `tokens`, so a hash collision cannot hand back another
  // conversation.
  Result<std::unique_ptr<Session>> load_longest_prefix(std::shared_ptr<const Model> model,
                                                       std::span<const int32_t> tokens,
                                                       const SessionOptions& options = {}) const;

  // The token counts of the entries saved for `model`, ascending.
  std::vector<int64_t> saved_lengths(const Model& model) const;
  const std::string& directory() const noexcept { return dir_; }

 private:
  explicit PrefixStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace dsv4
