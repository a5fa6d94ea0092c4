// What `dsv4 run`, `dsv4 chat`, `dsv4 generate` and `dsv4 demo --text` share: the model and
// tokenizer from the command line, sampler options, a progress bar, and one generated turn.
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "cli.hpp"
#include "dsv4/model/model.hpp"
#include "dsv4/model/session.hpp"
#include "dsv4/sampling/sampler.hpp"
#include "dsv4/text/tokenizer.hpp"

namespace dsv4::cli {

// A bar on stderr, drawn only when stderr is a terminal (scripts and logs stay clean).
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  void update(double fraction);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  int drawn_ = -1;
};

struct TextModel {
  std::shared_ptr<const Model> model;
  std::shared_ptr<const text::Tokenizer> tokenizer;
  std::string description;
};

// --model DIR (its tokenizer.json, or --tokenizer PATH) or --preset demo (the embedded random
// model, with --tokenizer PATH or the tokenizer found at build time). Checks that every token id
// fits the model's vocabulary.
Result<TextModel> load_text_model(const Args& args);
// The tokenizer of --tokenizer PATH, else the V4 tokenizer this build was configured with.
Result<std::shared_ptr<const text::Tokenizer>> load_tokenizer_arg(const Args& args);

// --temperature --top-k --top-p --min-p --repeat-penalty --presence-penalty
// --frequency-penalty --seed; EOS is always a stop token.
Result<sampling::SamplerParams> sampler_params_from_args(const Args& args,
                                                         const text::Tokenizer& tok,
                                                         float default_temperature);

struct TurnResult {
  int64_t prefill_tokens = 0;
  double prefill_seconds = 0;
  int64_t generated_tokens = 0;
  double decode_seconds = 0;
  bool ended_by_stop = false;  // EOS or a stop string, not the token limit
  std::string text;            // the generated text (without the EOS)
};

// Appends `prompt` (in chunks, with a progress bar for long ones), then samples up to
// `max_new` tokens, streaming their text to `out` as it completes. The turn's closing EOS is
// appended too, so the cache holds the finished turn and the next prompt can follow it.
Result<TurnResult> generate_turn(Session& session,
                                 const std::shared_ptr<const text::Tokenizer>& tokenizer,
                                 sampling::Sampler& sampler, std::span<const int32_t> prompt,
                                 int64_t max_new, std::FILE* out);
// The same with each completed piece of text handed to `on_piece`; returning false stops the
// turn after that token (a client that went away): kCancelled.
using PieceCallback = std::function<bool(const std::string& piece)>;
// Picks each next token instead of the sampler (null: the sampler): `dsv4 serve`'s test hook.
using TokenChooser = std::function<Result<int32_t>(std::span<const float> logits)>;
Result<TurnResult> generate_turn(Session& session,
                                 const std::shared_ptr<const text::Tokenizer>& tokenizer,
                                 sampling::Sampler& sampler, std::span<const int32_t> prompt,
                                 int64_t max_new, const PieceCallback& on_piece,
                                 const TokenChooser& choose = nullptr);

// One generated turn as steps, so that a scheduler can interleave many sessions (dsv4 serve) and
// generate_turn can run one: prefill the prompt in chunks, then repeatedly append the picked token
// (alone, or in a batch with other sessions' tokens) and pick the next from its logits. The
// tokens and text are those generate_turn gives, whatever the interleaving.
class TurnStepper {
 public:
  // kClosing: the turn is over, and the closing EOS (next_token()) is still to be appended, by
  // the same kind of step as a decode step (its logits are not read).
  enum class Phase { kPrefill, kDecode, kClosing, kDone };

  TurnStepper(Session& session, std::shared_ptr<const text::Tokenizer> tokenizer,
              sampling::Sampler& sampler, std::vector<int32_t> prompt, int64_t max_new,
              PieceCallback on_piece, TokenChooser choose = nullptr);

  Phase phase() const noexcept { return phase_; }
  Session& session() const noexcept { return session_; }
  // kPrefill: appends up to `chunk` more prompt tokens; after the last, picks the first token.
  Status prefill(int64_t chunk, const AppendOptions& options = {});
  // Prompt tokens appended so far, and in all.
  int64_t prefilled() const noexcept { return prefilled_; }
  int64_t prompt_size() const noexcept { return int64_t(prompt_.size()); }
  // kDecode and kClosing: the token the next step appends, and where its logits go (one row).
  int32_t next_token() const noexcept { return next_; }
  float* logits() noexcept { return logits_.data(); }
  // kDecode, after next_token() was appended and its logits written: picks the next token, or
  // ends the turn (stop, EOS or max_new: kClosing, or kDone without an EOS token). kClosing,
  // after the EOS was appended: kDone.
  Status advance();
  // True in the phases whose next step appends next_token().
  bool stepping() const noexcept { return phase_ == Phase::kDecode || phase_ == Phase::kClosing; }
  const TurnResult& result() const noexcept { return result_; }

 private:
  Status pick();    // the next token from logits_
  Status finish();  // flushes the text; the closing EOS comes next
  Session& session_;
  std::shared_ptr<const text::Tokenizer> tokenizer_;
  sampling::Sampler& sampler_;
  std::vector<int32_t> prompt_;
  int64_t max_new_;
  PieceCallback on_piece_;
  TokenChooser choose_;
  text::StreamDecoder decoder_;
  std::vector<float> logits_;
  TurnResult result_;
  Phase phase_ = Phase::kPrefill;
  int64_t prefilled_ = 0;
  int32_t next_ = -1;
  bool stop_after_next_ = false;
  std::chrono::steady_clock::time_point prefill_start_, decode_start_;
};

void print_turn_stats(const TurnResult& r, std::FILE* to);

}  // namespace dsv4::cli
