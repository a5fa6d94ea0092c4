// Choosing the next token from a row of logits: penalties and logit bias, then temperature,
// top-k, top-p (nucleus) and min-p truncation, then a draw from a seeded generator of our own
// (xoshiro256**), so the same seed gives the same tokens on every platform and standard library.
// Also the stop conditions: stop token ids, and stop strings found in the decoded text.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dsv4/core/status.hpp"

namespace dsv4::text {
class Tokenizer;
}

namespace dsv4::sampling {

struct SamplerParams {
  float temperature = 1.0f;  // 0: greedy (the highest logit, lowest id on ties)
  int32_t top_k = 0;         // keep the k most likely tokens; 0: all
  float top_p = 1.0f;        // keep the smallest set whose probability reaches top_p; 1: all
  float min_p = 0.0f;        // drop tokens below min_p × the top token's probability; 0: none
  float repetition_penalty = 1.0f;  // > 1: recent tokens' logits divided (positive) or multiplied
  float presence_penalty = 0.0f;    // subtracted once from every recent token's logit
  float frequency_penalty = 0.0f;   // subtracted per occurrence
  int32_t penalty_last_n = 64;      // how many accepted tokens count as recent; -1: all
  uint64_t seed = 0;
  std::unordered_map<int32_t, float> logit_bias;  // added to the logits before anything else
  std::vector<int32_t> stop_tokens;
  std::vector<std::string> stop_strings;  // need a tokenizer (Sampler::set_tokenizer)
};

// Checks the parameters: kInvalidArgument naming the first bad one.
Status check_params(const SamplerParams& params);

// xoshiro256** seeded through splitmix64: identical streams everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1), 53 random bits

 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  // Fails with kInvalidArgument on bad parameters.
  static Result<std::unique_ptr<Sampler>> create(SamplerParams params);
  // Stop strings are matched in the text of the accepted tokens.
  void set_tokenizer(std::shared_ptr<const text::Tokenizer> tokenizer);

  // The next token. kInvalidArgument if the logits hold a NaN or if no token is left to draw.
  Result<int32_t> sample(std::span<const float> logits);
  // Records a generated (or prompt) token for the penalties and the stop checks; returns true
  // when generation should stop (a stop token, or the text now contains a stop string).
  bool accept(int32_t token);
  // Forgets the history and re-seeds.
  void reset();

  // The probabilities sample() draws from, after every transformation, as (token, p) pairs in
  // decreasing order: what the distribution tests compare against.
  Result<std::vector<std::pair<int32_t, float>>> distribution(std::span<const float> logits);

  const SamplerParams& params() const { return params_; }

 private:
  explicit Sampler(SamplerParams params);
  // The logits with bias and penalties applied: `logits` itself when there are none, else work_.
  std::span<const float> apply_penalties_and_bias(std::span<const float> logits);
  // Leaves the final distribution in candidates_ (token, probability), most likely first.
  Status build_distribution(std::span<const float> logits);

  SamplerParams params_;
  Rng rng_;
  std::shared_ptr<const text::Tokenizer> tokenizer_;
  std::vector<int32_t> history_;
  std::string recent_text_;  // the tail of the decoded text, for stop strings
  std::vector<float> work_;
  std::vector<std::pair<int32_t, float>> candidates_;  // working values, then probabilities
};

}  // namespace dsv4::sampling
